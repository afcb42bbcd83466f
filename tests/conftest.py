"""What every test shares: a state directory of its own, never the user's (the embedded
Redis's password that ``toolfleet up`` keeps), inherited by every process a test starts."""

from __future__ import annotations

import os
import tempfile

os.environ["TOOLFLEET_STATE_DIR"] = tempfile.mkdtemp(prefix="toolfleet-test-state-")
