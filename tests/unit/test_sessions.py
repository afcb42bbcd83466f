"""Session placement from health records (pure)."""

from __future__ import annotations

import time

import pytest

from toolfleet.client.sessions import place
from toolfleet.models import InstanceHealth


def rec(worker: str, state: str = "ready", served: int = 0, session: str | None = None):
    now = time.time()
    return InstanceHealth(
        worker=worker,
        profile="python",
        state=state,
        worker_pid=1,
        generation=1,
        prompts_served=served,
        started_at=now,
        updated_at=now,
        session=session,
        version="x",
    )


def names(records):
    return [r.worker for r in records]


def test_least_busy_prefers_ready_then_fewest_prompts_and_skips_leased_and_down():
    records = [
        rec("a", "busy", 0),
        rec("b", "ready", 9),
        rec("c", "ready", 2),
        rec("d", "ready", 0, session="s1"),
        rec("e", "failed"),
        rec("f", "restarting"),
    ]
    assert names(place(records, "least-busy")) == ["c", "b", "a"]


def test_round_robin_rotates_over_all_workers_and_skips_unavailable_ones():
    records = [rec("a"), rec("b"), rec("c")]
    firsts = [names(place(records, "round-robin", turn))[0] for turn in range(6)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    leased = [rec("a"), rec("b", session="s"), rec("c")]
    assert names(place(leased, "round-robin", 1)) == ["c", "a"]


def test_unknown_strategy():
    with pytest.raises(ValueError, match="round-robin"):
        place([rec("a")], "random")  # type: ignore[arg-type]
