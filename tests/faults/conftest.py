"""Fault-suite fixtures: the integration tier's real Redis and worker processes; each
test's tally (a ``tally`` property) printed at the end of the run, also under xdist."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import redis_server, settings, workers

__all__ = ["pytest_terminal_summary", "redis_server", "settings", "workers"]


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


@pytest.fixture
def tally_record(record_property: Any) -> Any:
    """``tally_record(tally)``: print the tally at the end of the run."""
    return lambda tally: record_property("tally", tally.show())
