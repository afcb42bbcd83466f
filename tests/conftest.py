"""What every test shares: a state directory of its own, never the user's (the embedded
Redis's password that ``toolfleet up`` keeps), inherited by every process a test starts;
a garbage collection after each test, so that a socket or file a test leaves open is
reported (ResourceWarning, an error here) by that test, not by whichever later test the
collector happens to run in; and the fault tests' tallies printed at the end of the run
(here, in the conftest pytest loads first: under xdist the controller never collects
the fault suite's own)."""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

os.environ["TOOLFLEET_STATE_DIR"] = tempfile.mkdtemp(prefix="toolfleet-test-state-")


@pytest.fixture(autouse=True)
def _collect_what_the_test_left() -> Iterator[None]:
    yield
    gc.collect()


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
