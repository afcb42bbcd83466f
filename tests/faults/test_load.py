"""Load with faults: workers' process groups and tools killed at random under 2,000
prompts with 64 in flight; nothing lost, nothing run twice (the profile says ``fail``).

TOOLFLEET_FAULT_SCALE=full runs 5 workers x 5,000 prompts.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from toolfleet import Settings

from ..integration.conftest import _fresh_settings
from ..integration.procs import Workers
from .tally import Tally, answers

FULL = os.environ.get("TOOLFLEET_FAULT_SCALE") == "full"
WORKERS, PROMPTS, PAUSE = (5, 5000, 0.02) if FULL else (3, 2000, 0.01)
IN_FLIGHT = 64
# a fault after every EVERY answers collected: the same number of faults (PROMPTS //
# EVERY - 1) on a fast machine and a slow one, each while later prompts are in flight
EVERY = 100

PROFILES = """
[profiles.once]
extends = "echo"
on_worker_lost = "fail"
"""


@pytest.fixture
def settings(redis_server, tmp_path: Path) -> Settings:  # type: ignore[no-untyped-def]
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES, encoding="utf-8")
    return _fresh_settings(redis_server, profiles=path, visibility_timeout=4)


def test_random_kills_lose_nothing_and_run_nothing_twice(
    workers: Workers, tmp_path: Path, tally_record: Callable[[Tally], None]
) -> None:
    log = tmp_path / "executions.log"
    names = workers.start("once", WORKERS, ECHO_TOOL_LOG=str(log))
    workers.wait_ready(names)
    rng = random.Random(7)
    tally = Tally("worker and tool kills", submitted=PROMPTS)

    def fault() -> bool:
        """Kill a random worker's process group (worker and tool; its replacement
        starts) or a random tool."""
        alive = [n for n, p in workers.procs.items() if p.poll() is None]
        if rng.random() < 0.5 and len(alive) > 1:
            victim = workers.procs[rng.choice(alive)]
            os.killpg(victim.pid, signal.SIGKILL)  # started in a session of its own
            workers.start("once", 1, ECHO_TOOL_LOG=str(log))
            tally.faults["worker group SIGKILL"] += 1
            return True
        tools = [r.pid for r in workers.fleet.status("once") if r.pid]
        if tools:
            try:
                os.kill(rng.choice(tools), signal.SIGKILL)
                tally.faults["tool SIGKILL"] += 1
                return True
            except ProcessLookupError:
                pass
        return False

    started = time.monotonic()
    outcomes: dict[int, str] = {}
    due = 0  # faults owed: one per EVERY answers, made as soon as one can be
    texts = [f":sleep {PAUSE} item-{i}" for i in range(PROMPTS)]
    for i, got in answers(workers.fleet, texts, "once", in_flight=IN_FLIGHT):
        outcomes[i] = got if isinstance(got, str) else "ok"
        tally.count(outcomes[i], isinstance(got, str) or got.output == f"slept {PAUSE} item-{i}")
        if (i + 1) % EVERY == 0 and i + 1 < PROMPTS:
            due += 1
        if due and fault():
            due -= 1
    tally.seconds = time.monotonic() - started
    runs = tally.ran(log, [f"item-{i}" for i in range(PROMPTS)])
    tally_record(tally)
    assert sum(tally.faults.values()) == PROMPTS // EVERY - 1, tally.faults
    assert tally.lost == 0 and tally.wrong == 0 and len(outcomes) == PROMPTS, tally
    assert tally.ran_twice == 0, tally
    # a killed tool fails its prompt; a killed worker's prompt is not run again (at most
    # once); nothing else goes wrong
    assert set(outcomes.values()) <= {"ok", "ToolCrashed", "WorkerLost"}, Counter(outcomes.values())
    for i, outcome in outcomes.items():
        if outcome == "ok":  # an answered prompt ran exactly once
            assert runs[f"item-{i}"] == 1, i
