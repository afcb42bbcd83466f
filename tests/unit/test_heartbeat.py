"""The heartbeat writes on state changes and intervals, coalescing bursts."""

from __future__ import annotations

import threading
import time

from toolfleet.health import read_health
from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool.fake import FakeInstance
from toolfleet.workers.heartbeat import Heartbeat
from toolfleet.workers.supervisor import Supervisor


class DictRedis:
    """The few commands health records use, in memory."""

    def __init__(self):
        self.data: dict[str, tuple[str, float]] = {}
        self.sets = 0

    def set(self, name, value, px=None):
        self.sets += 1
        self.data[name] = (value, time.monotonic() + px / 1000)

    def delete(self, name):
        self.data.pop(name, None)

    def scan_iter(self, match=None, count=None):
        now = time.monotonic()
        return [k for k, (_, exp) in self.data.items() if exp > now]

    def mget(self, keys):
        return [self.data[k][0] if k in self.data else None for k in keys]


def test_heartbeat_publishes_and_stops():
    client = DictRedis()
    sup = Supervisor(FakeInstance(BUILTIN_PROFILES["echo"]), "w1@h", ["toolfleet.echo"])
    beat = Heartbeat(client, sup.health, interval=0.1)
    sup.subscribe(lambda old, new: beat.notify())
    beat.start()
    sup.start()
    try:
        time.sleep(0.35)
        (record,) = read_health(client)
        assert record.worker == "w1@h" and record.state == "ready"
        assert 3 <= client.sets <= 8  # first write, one state change, ~3 intervals
    finally:
        sup.stop()
        beat.stop()
    assert read_health(client) == []


def test_fast_prompts_cost_no_writes_but_a_long_one_shows_busy():
    client = DictRedis()

    def respond(text):
        if text == "slow":
            time.sleep(0.5)
        return text

    sup = Supervisor(FakeInstance(BUILTIN_PROFILES["echo"], respond), "w1@h", [])
    beat = Heartbeat(client, sup.health, interval=10, state=lambda: sup.state)
    sup.subscribe(lambda old, new: beat.notify())
    sup.start()
    beat.start()
    try:
        time.sleep(0.2)
        before = client.sets
        for i in range(200):
            sup.run(str(i))
        time.sleep(0.2)
        assert client.sets == before  # 400 state changes, all back to 'ready' at once
        seen = []
        runner = threading.Thread(target=sup.run, args=("slow",))
        runner.start()
        time.sleep(0.25)
        seen.append(read_health(client)[0].state)
        runner.join()
        time.sleep(0.2)
        seen.append(read_health(client)[0].state)
        assert seen == ["busy", "ready"]
        assert client.sets == before + 2
    finally:
        sup.stop()
        beat.stop()
    assert read_health(client) == []
