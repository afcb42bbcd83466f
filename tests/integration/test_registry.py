"""The worker registry on a real Redis: status finds records without scanning the backend."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis

from toolfleet import Fleet, Settings
from toolfleet import health as health_module
from toolfleet.health import forget_health, read_health, registered, write_health
from toolfleet.keys import WORKERS, health_key
from toolfleet.models import InstanceHealth

from ..helpers import eventually
from .procs import Workers, env_for


def record(worker: str, profile: str = "echo") -> InstanceHealth:
    now = time.time()
    return InstanceHealth(
        worker=worker,
        worker_pid=1,
        profile=profile,
        state="ready",
        started_at=now,
        updated_at=now,
        generation=1,
        prompts_served=0,
        version="test",
    )


def calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


@pytest.fixture
def client(settings: Settings):  # type: ignore[no-untyped-def]
    with redis.Redis.from_url(settings.result_backend) as c:
        yield c


def test_status_reads_the_registry_and_never_scans(settings: Settings, client) -> None:  # type: ignore[no-untyped-def]
    pipe = client.pipeline(transaction=False)
    for _ in range(5000):  # stored results: what a SCAN would have to walk through
        pipe.set(f"celery-task-meta-{uuid.uuid4()}", b'{"status": "SUCCESS"}')
    pipe.execute()
    for i in range(20):
        write_health(client, record(f"w{i:02d}@h", "echo" if i % 2 else "bash"), ttl=60)
    scans, keys = calls(client, "scan"), calls(client, "keys")
    with Fleet(settings) as fleet:
        everyone = fleet.status()
        bash = fleet.status("bash")
    assert [r.worker for r in everyone] == [f"w{i:02d}@h" for i in range(20)]
    assert [r.worker for r in bash] == [f"w{i:02d}@h" for i in range(0, 20, 2)]
    assert (calls(client, "scan"), calls(client, "keys")) == (scans, keys)


def test_dead_workers_leave_the_registry_and_unregistered_records_return(
    client,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health_module, "CLOCK_SLACK", 0.3)
    write_health(client, record("alive@h"), ttl=60)
    write_health(client, record("dead@h"), ttl=0.2)
    assert [r.worker for r in read_health(client)] == ["alive@h", "dead@h"]
    # the dead worker's record expires: it is no longer shown, then its entry goes too
    eventually(lambda: [r.worker for r in read_health(client)] == ["alive@h"], 5, "expiry")
    eventually(lambda: registered(client) == ["alive@h"], 5, "the entry removed")
    assert client.zscore(WORKERS, "dead@h") is None
    # a record whose entry was lost (e.g. removed by hand) is not shown, and is again
    # with the worker's next beat, which registers it anew
    client.zrem(WORKERS, "alive@h")
    assert read_health(client) == []
    write_health(client, record("alive@h"), ttl=60)
    assert [r.worker for r in read_health(client)] == ["alive@h"]
    # a record that is not a health record is skipped, not a crash
    client.zadd(WORKERS, {"garbage@h": time.time() + 60})
    client.set(health_key("garbage@h"), b"{not json")
    assert [r.worker for r in read_health(client)] == ["alive@h"]
    forget_health(client, "alive@h")
    assert client.exists(health_key("alive@h")) == 0
    assert registered(client) == ["garbage@h"]


def test_status_command_with_dead_and_garbage_entries(settings: Settings, client) -> None:  # type: ignore[no-untyped-def]
    client.zadd(WORKERS, {"gone@h": time.time() + 60, "bad@h": time.time() + 60})
    client.set(health_key("bad@h"), b"[1, 2")
    write_health(client, record("fine@h"), ttl=60)
    out = subprocess.run(
        [sys.executable, "-m", "toolfleet", "status", "--json"],
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert '"fine@h"' in out.stdout and "gone@h" not in out.stdout and "bad@h" not in out.stdout


def test_real_workers_register_and_leave(workers: Workers, client) -> None:  # type: ignore[no-untyped-def]
    workers.wait_ready(workers.start("echo", 2))
    one, two = workers.node("echo1"), workers.node("echo2")
    assert set(registered(client)) == {one, two}
    # a clean stop leaves a last record, state "stopping", that expires like any other
    assert workers.stop("echo1") == set()
    assert {r.worker: r.state for r in read_health(client)} in (
        {one: "stopping", two: "ready"},
        {two: "ready"},
    )
    eventually(lambda: [r.worker for r in read_health(client)] == [two], 10, "echo1 expired")
    # a SIGKILLed worker stays registered until its record expires, but is not shown
    workers.stop("echo2", sig=signal.SIGKILL)
    eventually(lambda: workers.fleet.status() == [], 10, "the killed worker's record expired")
    assert set(registered(client)) == {one, two}  # until CLOCK_SLACK has passed
