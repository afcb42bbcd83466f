"""Redis Sentinel end to end: a fleet on sentinel:// URLs survives its master's death."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolfleet import Fleet, Settings
from toolfleet.client.handle import PromptHandle
from toolfleet.health import read_health
from toolfleet.redisconn import redis_client

from ..helpers import eventually
from .procs import Workers
from .sentinels import MASTER, SentinelGroup


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    servers = SentinelGroup(tmp_path)
    try:
        yield servers.start()
    finally:
        servers.stop()


@pytest.fixture
def settings(group: SentinelGroup) -> Settings:  # the workers fixture uses these
    return Settings(broker_url=group.url, sentinel_master=MASTER, heartbeat_interval=0.5)


def test_toolfleet_clients_follow_the_sentinels(group: SentinelGroup, settings: Settings) -> None:
    with redis_client(settings.broker_url, settings.sentinel_master) as client:
        client.set("probe", "1")
    with group.client("a") as master:
        assert master.get("probe") == b"1"  # the sentinels led it to the master


def test_master_killed_under_load_loses_no_prompt(
    group: SentinelGroup, settings: Settings, workers: Workers, tmp_path: Path
) -> None:
    workers.wait_ready(workers.start("bash", 2))
    log = tmp_path / "ran.log"
    total, kill_at = 120, 40
    handles: dict[int, PromptHandle] = {}
    killed = threading.Event()

    errors: list[BaseException] = []

    def produce() -> None:
        try:
            submit_all()
        except BaseException as exc:
            errors.append(exc)

    def submit_all() -> None:
        with Fleet(settings) as fleet:
            for i in range(total):
                if i == kill_at:
                    killed.wait(30)
                handles[i] = fleet.submit(f"echo p{i} >> {log}; echo p{i}", "bash")
                time.sleep(0.02)

    producer = threading.Thread(target=produce)
    producer.start()
    eventually(lambda: len(handles) >= kill_at, 60, "prompts before the kill")
    assert group.master_port() == group.ports["a"]
    group.kill("a")
    t_kill = time.monotonic()
    killed.set()
    eventually(lambda: group.master_port() == group.ports["b"], 60, "the replica promoted")
    promoted = time.monotonic() - t_kill
    # recovery: a new producer's prompt is answered again
    with Fleet(settings) as fleet:
        probe = fleet.submit("echo probe", "bash").get(timeout=120)
    recovered = time.monotonic() - t_kill
    assert probe.ok and probe.output == "probe"
    producer.join(120)
    assert not producer.is_alive() and errors == []
    outputs = {i: h.get(timeout=120) for i, h in sorted(handles.items())}
    answered_after = [
        i for i in range(kill_at, total) if outputs[i].ok and outputs[i].output == f"p{i}"
    ]
    # every prompt answered, with its own output; none ran twice, none lost
    assert [i for i, r in outputs.items() if not (r.ok and r.output == f"p{i}")] == []
    assert answered_after == list(range(kill_at, total))
    ran = Counter(log.read_text().split())
    assert ran == Counter({f"p{i}": 1 for i in range(total)})
    # the workers report to the new master
    with redis_client(settings.result_backend, MASTER) as client:
        assert len(read_health(client)) == 2
    print(f"promotion {promoted:.1f} s, a new prompt answered {recovered:.1f} s after the kill")
