"""Redis SIGKILLed mid-load and started again on its own data, with the persistence
``toolfleet up`` gives its embedded Redis by default (append-only file, fsync every
second): for producers waiting in ``get()``, for prompts submitted without waiting, and
for a map. Nothing lost, nothing wrong, nothing run twice (the profile says ``fail``);
each test prints its tally."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from toolfleet import Fleet, Settings
from toolfleet.cli.local import EmbeddedRedis

from ..helpers import eventually
from ..integration.procs import Workers
from .tally import Tally, answers, crash_redis

PROFILES = """
[profiles.once]
extends = "echo"
on_worker_lost = "fail"
"""
PAUSE = 0.02


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    data = tmp_path / "redis"
    data.mkdir()
    server = EmbeddedRedis(appendonly=True, directory=str(data)).start()
    yield server
    server.stop()


@pytest.fixture
def fleet(server: EmbeddedRedis, tmp_path: Path) -> Iterator[Workers]:
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES, encoding="utf-8")
    settings = Settings(
        broker_url=server.url, heartbeat_interval=0.5, profiles=path, visibility_timeout=4
    )
    workers = Workers(settings, tmp_path)
    yield workers
    assert workers.close() == set(), "processes left running"


def _start(workers: Workers, log: Path, count: int = 3) -> None:
    workers.wait_ready(workers.start("once", count, ECHO_TOOL_LOG=str(log)))


def _check(tally: Tally, record: Callable[[Tally], None]) -> None:
    record(tally)
    assert tally.lost == 0, tally
    assert tally.wrong == 0, tally
    assert tally.ran_twice == 0, tally
    assert tally.ok + sum(tally.failed.values()) == tally.submitted, tally


def test_producers_waiting_in_get_lose_nothing(
    server: EmbeddedRedis, fleet: Workers, tmp_path: Path, tally_record: Callable[[Tally], None]
) -> None:
    log = tmp_path / "runs.log"
    _start(fleet, log)
    total, window = 600, 64
    tally = Tally("redis SIGKILL under get()", submitted=total, faults={"redis SIGKILL": 1})
    started = time.monotonic()
    crashed = False
    texts = [f":sleep {PAUSE} item-{i}" for i in range(total)]
    for i, got in answers(fleet.fleet, texts, "once", in_flight=window):
        if isinstance(got, str):
            tally.count(got)
        else:
            tally.count("ok", got.output == f"slept {PAUSE} item-{i}")
        if i == total // 3:
            crash_redis(server)
            crashed = True
    assert crashed
    tally.seconds = time.monotonic() - started
    tally.ran(log, [f"item-{i}" for i in range(total)])
    _check(tally, tally_record)


def test_prompts_submitted_without_waiting_all_run(
    server: EmbeddedRedis, fleet: Workers, tmp_path: Path, tally_record: Callable[[Tally], None]
) -> None:
    log = tmp_path / "runs.log"
    total = 400
    tags = [f"item-{i}" for i in range(total)]
    tally = Tally("redis SIGKILL, submitted without waiting", submitted=total)
    started = time.monotonic()
    with Fleet(fleet.settings) as producer:  # a producer that sends and goes away
        for tag in tags:
            producer.submit(f":sleep {PAUSE} {tag}", "once")
    time.sleep(1.5)  # appendfsync everysec: the queued prompts are on disk
    _start(fleet, log)
    eventually(lambda: log.exists() and len(log.read_text().splitlines()) >= 60, 60, "runs")
    crash_redis(server)
    tally.faults["redis SIGKILL"] += 1

    def all_ran() -> bool:
        return set(tally.ran(log, tags)) >= set(tags)

    def missing() -> str:
        gone = [tag for tag in tags if not tally.ran(log, tags)[tag]]
        return f"{len(gone)} never ran ({', '.join(gone[:10])}); {_whereabouts(server)}"

    try:
        eventually(all_ran, 120, missing)
    finally:
        counts = tally.ran(log, tags)
        for tag in tags:
            tally.count("ok" if counts[tag] else None)
        tally.seconds = time.monotonic() - started
    _check(tally, tally_record)


def _whereabouts(server: EmbeddedRedis) -> str:
    """Where the broker's messages are, to name in a failure."""
    client = redis.Redis.from_url(server.url)
    queued = {
        k.decode(): client.llen(k) for k in client.keys("toolfleet.*") if client.type(k) == b"list"
    }
    return (
        f"queued {queued}, unacked {client.hlen('unacked')}, "
        f"restore lock {client.pttl('unacked_mutex')} ms"
    )


def test_a_map_finishes_soon_after_redis_is_back(
    server: EmbeddedRedis, fleet: Workers, tmp_path: Path, tally_record: Callable[[Tally], None]
) -> None:
    log = tmp_path / "runs.log"
    _start(fleet, log)
    total, result_timeout = 600, 20.0
    items = [f":sleep {PAUSE} item-{i}" for i in range(total)]
    tally = Tally("redis SIGKILL under map", submitted=total, faults={"redis SIGKILL": 1})
    started = time.monotonic()
    run = fleet.fleet.map(items, "once", in_flight=8, chunk=10, result_timeout=result_timeout)
    crashed_at = None
    for n, outcome in enumerate(run, 1):
        if outcome.ok:
            assert outcome.result is not None
            tally.count("ok", outcome.result.output == f"slept {PAUSE} item-{outcome.key}")
        else:
            tally.count(outcome.error_type)
        if n == total // 3:
            crashed_at = time.monotonic()
            crash_redis(server)
    assert crashed_at is not None
    tally.seconds = time.monotonic() - started
    after = time.monotonic() - crashed_at
    tally.ran(log, [f"item-{i}" for i in range(total)])
    _check(tally, tally_record)
    # one result timeout (20 s) and two looks for lost messages (10 s apart) after the
    # restart at most, not a chunk's worth of result timeouts (10 x 20 s)
    print(f"map finished {after:.1f} s after Redis was killed")
    assert after < 2 * result_timeout + 30 + 60, after
