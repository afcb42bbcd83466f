"""Fault-suite fixtures: the integration tier's real Redis and worker processes; each
test's tally (a ``tally`` property, printed at the end of the run by tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import redis_server, settings, workers

__all__ = ["redis_server", "settings", "tally_record", "workers"]


@pytest.fixture
def tally_record(record_property: Any) -> Any:
    """``tally_record(tally)``: print the tally at the end of the run."""
    return lambda tally: record_property("tally", tally.show())
