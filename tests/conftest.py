"""What every test shares: a state directory of its own, never the user's (the embedded
Redis's password that ``toolfleet up`` keeps), inherited by every process a test starts;
and the fault tests' tallies printed at the end of the run (here, in the conftest pytest
loads first: under xdist the controller never collects the fault suite's own)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

os.environ["TOOLFLEET_STATE_DIR"] = tempfile.mkdtemp(prefix="toolfleet-test-state-")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = [
        f"{report.outcome:>6} {value}"
        for kind in ("passed", "failed")
        for report in terminalreporter.stats.get(kind, [])
        if getattr(report, "when", "") == "call"
        for name, value in getattr(report, "user_properties", [])
        if name == "tally"
    ]
    if lines:
        terminalreporter.write_sep("-", "fault tallies")
        for line in lines:
            terminalreporter.write_line(line)
