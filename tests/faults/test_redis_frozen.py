"""A worker told to stop while its Redis is frozen (SIGSTOP: a stalled host or a cut
link looks the same) exits in seconds, not after a container's grace period, and the
prompts it held are answered by another worker once Redis is back."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis

from ..integration.procs import Workers, descendants, pid_alive

PAUSE = 0.3


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def fleet(server: EmbeddedRedis, tmp_path: Path) -> Iterator[Workers]:
    settings = Settings(broker_url=server.url, heartbeat_interval=0.5, visibility_timeout=4)
    workers = Workers(settings, tmp_path)
    yield workers
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGCONT)  # never leave it frozen
    assert workers.close() == set(), "processes left running"


def test_a_worker_stops_in_seconds_while_redis_is_frozen(
    server: EmbeddedRedis, fleet: Workers
) -> None:
    (first,) = fleet.start("echo")
    fleet.wait_ready([first])
    handles = [fleet.fleet.submit(f":sleep {PAUSE} item-{i}", "echo") for i in range(6)]
    time.sleep(PAUSE * 2)  # the worker holds one
    proc = fleet.procs[first]
    tree = {proc.pid} | descendants(proc.pid)
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    finally:
        took = time.monotonic() - started
        os.kill(server.proc.pid, signal.SIGCONT)
    print(f"worker stopped {took:.1f} s after SIGTERM with Redis frozen")
    assert took < 15, f"the worker took {took:.1f} s to stop (was over 60 s before)"
    assert not [pid for pid in tree if pid_alive(pid)], "the tool outlived its worker"
    fleet.start("echo", prefix="second")
    got = [h.get(timeout=60).output for h in handles]
    assert got == [f"slept {PAUSE} item-{i}" for i in range(6)]
