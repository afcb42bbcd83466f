"""Where the real CLIs the tests drive are installed: ``./run test`` names them in
``TOOLFLEET_TEST_AIDER`` and ``TOOLFLEET_TEST_AGENTS`` (the locked ones, or the newest with
``--latest``); by default the repository's ``.aider-venv`` and ``.agents``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["AGENTS", "AIDER"]

ROOT = Path(__file__).resolve().parents[1]

#: the real aider (scripts/aider-venv)
AIDER = Path(os.environ.get("TOOLFLEET_TEST_AIDER") or ROOT / ".aider-venv" / "bin" / "aider")
#: the directory of the agent CLIs' executables (scripts/agents-install)
AGENTS = Path(os.environ.get("TOOLFLEET_TEST_AGENTS") or ROOT / ".agents" / "node_modules" / ".bin")
