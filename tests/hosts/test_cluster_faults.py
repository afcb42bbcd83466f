"""Faults between hosts, each while a rollout of worktree items runs (bash steps editing
files of the git host's repository, ``map --apply`` on a producer host): a worker host
cut off, a worker host frozen past the lease, the Redis master killed, the producer host
killed and the map resumed on another host, the git host away. After each: every item
ok or a typed failure, none lost, none run twice, every ok item's change on the git
host's main exactly once, no change recorded that the git host lacks."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..faults.tally import Tally
from ..helpers import eventually
from .cluster import SESSION_TTL, Cluster, Outcome
from .net import Host, Net

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def tally_record(record_property: Any) -> Callable[[Tally], None]:
    """``tally_record(tally)``: print the tally, and again at the end of the run."""
    return lambda tally: record_property("tally", tally.show())


@pytest.fixture
def cluster(net: Net) -> Iterator[Cluster]:
    made = Cluster(net)
    try:
        yield made.start()
    finally:
        made.close()


def _busy(cluster: Cluster, host_index: int = 0) -> None:
    host = cluster.workers[host_index]
    eventually(lambda: cluster.busy_on(host), 120, f"{host.name} holding an item")


def _run(cluster: Cluster, fault: Callable[[], None], pause: float = 2.0) -> Outcome:
    p1 = cluster.producers[0]
    proc = cluster.map(p1, cluster.clone(p1), pause=pause)
    fault()
    status = cluster.wait_map(proc)
    outcome = Outcome().read(p1.dir / "map.jsonl")
    assert status in (0, 1), (p1.dir / "map.err").read_text()
    return outcome


#: a worker host's fault, and its undoing: (what the tally calls it, do, undo, seconds)
HOST_FAULTS = {
    "cut": ("link cut", Host.cut, Host.restore, 8.0),
    "frozen": ("SIGSTOP", Host.freeze, Host.thaw, SESSION_TTL + 4.0),
}


@pytest.mark.parametrize("kind", list(HOST_FAULTS))
def test_a_worker_host_cut_off_or_frozen_mid_item_records_no_stale_change(
    cluster: Cluster, tally_record: Callable[[Tally], None], kind: str
) -> None:
    """A worker host cut off (its link down), or frozen (SIGSTOP of its processes) past
    the lease TTL, while it holds an item; then back. Its item fails with WorkerLost
    (at most once); the worker back neither commits nor records it."""
    name, do, undo, seconds = HOST_FAULTS[kind]
    tally = Tally(f"worker host {name} mid-item for {seconds:g} s, then back")
    w1 = cluster.workers[0]
    start = time.monotonic()

    def fault() -> None:
        _busy(cluster)
        do(w1)
        tally.faults[name] += 1
        time.sleep(seconds)  # past its health record: the producer gives the item up
        undo(w1)

    outcome = _run(cluster, fault, pause=3.0)
    cluster.wait_ready(len(cluster.workers))  # the worker is back
    eventually(lambda: not cluster.busy_on(w1), 60, f"{w1.name}'s stale session ended")
    tally.seconds = time.monotonic() - start
    cluster.account(tally, outcome)
    tally_record(tally)
    assert tally.failed.get("WorkerLost", 0) >= 1, tally.show()  # its item, not run again


def test_the_redis_master_killed_under_load_fails_over(
    cluster: Cluster, tally_record: Callable[[Tally], None]
) -> None:
    tally = Tally("Redis master killed under load (Sentinel failover)")
    before = cluster.redis.master_addr()
    start = time.monotonic()

    def fault() -> None:
        _busy(cluster)
        cluster.redis.kill_master()
        tally.faults["master SIGKILL"] += 1
        eventually(lambda: cluster.redis.master_addr() != before, 60, "a new master")

    outcome = _run(cluster, fault)
    tally.seconds = time.monotonic() - start
    cluster.account(tally, outcome)
    tally_record(tally)


def test_the_producer_host_killed_mid_map_resumes_on_another_host(
    cluster: Cluster, tally_record: Callable[[Tally], None]
) -> None:
    tally = Tally("producer host killed mid-map, resumed from its journal on another")
    p1, p2 = cluster.producers
    start = time.monotonic()
    proc = cluster.map(p1, cluster.clone(p1), pause=1.0)
    journal = p1.dir / "journal.jsonl"

    def some_done() -> bool:
        return len(Outcome().read(journal).ok()) >= 3

    eventually(some_done, 120, "three items journaled ok")
    p1.kill()
    tally.faults["producer host SIGKILL"] += 1
    proc.wait(10)
    # its journal carried to the other host (a copy, as from a backup or a shared volume)
    shutil.copy(journal, p2.dir / "journal.jsonl")
    resumed = cluster.map(p2, cluster.clone(p2), pause=1.0)
    assert cluster.wait_map(resumed) in (0, 1), (p2.dir / "map.err").read_text()
    outcome = Outcome().read(p1.dir / "map.jsonl").read(p2.dir / "map.jsonl")
    tally.seconds = time.monotonic() - start
    # an item in flight when its producer died ran on its worker, unrecorded, and runs
    # again from the journal: counted by what landed on main, not by the run log
    cluster.account(tally, outcome, runs_once=False)
    tally_record(tally)
    assert tally.ok == len(cluster.names), tally.show()


def test_the_git_host_away_for_a_while(
    cluster: Cluster, tally_record: Callable[[Tally], None]
) -> None:
    tally = Tally("git host unreachable for a while")
    start = time.monotonic()
    logs = [host.dir / "worker.log" for host in cluster.workers]

    def fault() -> None:
        _busy(cluster)
        cluster.git.host.cut()  # its link down: pushes hang until it is back
        tally.faults["git host cut"] += 1
        time.sleep(8)
        cluster.git.host.restore()
        cluster.git.stop()  # its daemon down: pushes refused, and tried again
        tally.faults["git daemon down"] += 1
        eventually(
            lambda: any("the git host away, retrying" in p.read_text() for p in logs), 60, "a retry"
        )
        time.sleep(4)
        cluster.git.serve()

    outcome = _run(cluster, fault)
    tally.seconds = time.monotonic() - start
    cluster.account(tally, outcome)
    tally_record(tally)
    assert tally.ok == len(cluster.names), tally.show()
