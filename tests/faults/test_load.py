"""Load with faults: workers and tools killed at random; nothing lost, nothing run twice.

CI runs a scaled-down version; TOOLFLEET_FAULT_SCALE=full runs 5 workers x 5,000 prompts
and prints the figures (see the issue note).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from toolfleet import Settings, ToolfleetError

from ..integration.conftest import _fresh_settings
from ..integration.procs import Workers

FULL = os.environ.get("TOOLFLEET_FAULT_SCALE") == "full"
WORKERS, PROMPTS, PAUSE = (5, 5000, 0.02) if FULL else (3, 600, 0.05)
# a fault after every EVERY answers collected: the same number of faults (PROMPTS //
# EVERY - 1) on a fast machine and a slow one, each while later prompts are in flight
EVERY = 100 if FULL else 40

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


def test_random_kills_lose_nothing_and_run_nothing_twice(workers: Workers, tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    names = workers.start("once", WORKERS, ECHO_TOOL_LOG=str(log))
    workers.wait_ready(names)
    rng = random.Random(7)
    injected: Counter[str] = Counter()

    def fault() -> bool:
        """Kill a random worker (and start its replacement) or a random tool."""
        alive = [n for n, p in workers.procs.items() if p.poll() is None]
        if rng.random() < 0.5 and len(alive) > 1:
            victim = rng.choice(alive)
            workers.procs[victim].send_signal(signal.SIGKILL)
            workers.start("once", 1, ECHO_TOOL_LOG=str(log))  # its replacement
            injected["worker SIGKILL"] += 1
            return True
        tools = [r.pid for r in workers.fleet.status("once") if r.pid]
        if tools:
            try:
                os.kill(rng.choice(tools), signal.SIGKILL)
                injected["tool SIGKILL"] += 1
                return True
            except ProcessLookupError:
                pass
        return False

    started = time.monotonic()
    handles = [workers.fleet.submit(f":sleep {PAUSE} item-{i}", "once") for i in range(PROMPTS)]
    outcomes: dict[int, str] = {}
    lost = []
    due = 0  # faults owed: one per EVERY answers collected, made as soon as one can be
    for i, handle in enumerate(handles):
        try:
            result = handle.get(timeout=180)
            assert result.output == f"slept {PAUSE} item-{i}"
            outcomes[i] = "ok"
        except ToolfleetError as exc:
            if type(exc).__name__ in ("ResultTimeout", "NoWorkers"):
                lost.append(i)
            outcomes[i] = type(exc).__name__
        if (i + 1) % EVERY == 0 and i + 1 < PROMPTS:
            due += 1
        if due and fault():
            due -= 1
    elapsed = time.monotonic() - started
    runs = Counter(line.rsplit(" ", 1)[-1] for line in log.read_text().splitlines())
    twice = sorted(item for item, n in runs.items() if n > 1)
    summary = {
        "workers": WORKERS,
        "prompts": PROMPTS,
        "injected": dict(injected),
        "outcomes": dict(Counter(outcomes.values())),
        "lost": len(lost),
        "resent_after_broker_loss": sum(h.resent for h in handles),
        "run_twice": len(twice),
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(summary))
    assert sum(injected.values()) == PROMPTS // EVERY - 1, injected
    where = {handles[i].id: handles[i].async_result.state for i in lost}
    assert lost == [] and len(outcomes) == PROMPTS, where
    assert twice == []
    # a killed tool fails its prompt; a killed worker's prompt is not run again (at most
    # once); nothing else goes wrong
    assert set(outcomes.values()) <= {"ok", "ToolCrashed", "WorkerLost"}, Counter(outcomes.values())
    for i, outcome in outcomes.items():
        if outcome == "ok":  # an answered prompt ran exactly once
            assert runs[f"item-{i}"] == 1, i
