"""The restart policy: backoff schedule, crash loop, recycling limits."""

from __future__ import annotations

import time

import pytest

from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool.interface import ToolSnapshot
from toolfleet.workers.restarts import MAX_BACKOFF, STABLE_AFTER, RestartPolicy, recycle_reason


def policy(**fields: object) -> RestartPolicy:
    return RestartPolicy(BUILTIN_PROFILES["echo"].model_copy(update=fields))


def test_first_retry_at_once_then_doubling_up_to_the_cap() -> None:
    p = policy(restart_backoff=1.0, crash_loop_restarts=100, crash_loop_window=1000.0)
    delays = []
    for _ in range(8):
        before = time.monotonic()
        assert p.failed("boom") is None
        delays.append(round(p.retry_at - before))
    assert delays == [0, 1, 2, 4, 8, 16, 30, 30]
    assert MAX_BACKOFF == 30


def test_crash_loop_after_the_profiles_count_within_its_window() -> None:
    p = policy(crash_loop_restarts=3, crash_loop_window=60.0, restart_backoff=0.0)
    assert p.failed("a") is None and p.failed("b") is None
    reason = p.failed("c")
    assert reason is not None and reason.startswith("crash loop: 3 failed starts in 60 s")
    assert reason.endswith("last: c")


def test_a_death_after_a_healthy_run_forgets_earlier_failures() -> None:
    p = policy(crash_loop_restarts=2, crash_loop_window=60.0, restart_backoff=0.0)
    assert p.failed("a") is None
    p.died(prompts_served=0, uptime=STABLE_AFTER + 1)
    assert p.failed("b") is None  # counted from zero again
    p.died(prompts_served=0, uptime=0.1)  # an early death does not forget
    assert p.failed("c") is not None


def snap(**fields: object) -> ToolSnapshot:
    base: dict[str, object] = dict(
        pid=1, generation=1, state="ready", prompts_served=0, last_latency_ms=None,
        p50_latency_ms=None, p95_latency_ms=None, rss_bytes=None, started_at=0.0,
        uptime=0.0, last_error=None,
    )  # fmt: skip
    base.update(fields)
    return ToolSnapshot(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("limits", "state", "expected"),
    [
        ({"max_prompts": 5}, {"prompts_served": 5}, "served 5 prompts (max_prompts 5)"),
        ({"max_prompts": 5}, {"prompts_served": 4}, None),
        ({"max_age": 60.0}, {"uptime": 61.0}, "up 61 s (max_age 60)"),
        ({"max_rss": 100}, {"rss_bytes": 100}, "RSS 100 bytes (max_rss 100)"),
        ({"max_rss": 100}, {"rss_bytes": None}, None),
    ],
)
def test_recycle_reason(limits: dict[str, object], state: dict[str, object], expected: str | None):
    profile = BUILTIN_PROFILES["echo"].model_copy(update=limits)
    assert recycle_reason(profile, lambda: snap(**state)) == expected


def test_no_limit_takes_no_snapshot() -> None:
    def fail() -> ToolSnapshot:
        raise AssertionError("snapshot taken")

    assert recycle_reason(BUILTIN_PROFILES["echo"], fail) is None
