"""The heartbeat writes on state changes and intervals, coalescing bursts."""

from __future__ import annotations

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


def test_bursts_of_state_changes_coalesce():
    client = DictRedis()
    sup = Supervisor(FakeInstance(BUILTIN_PROFILES["echo"]), "w1@h", [])
    beat = Heartbeat(client, sup.health, interval=10)
    sup.subscribe(lambda old, new: beat.notify())
    sup.start()
    beat.start()
    try:
        for i in range(200):
            sup.run(str(i))
        time.sleep(0.2)
    finally:
        sup.stop()
        beat.stop()
    # 400 state changes; at most one write per change, far fewer when they come in bursts
    assert 2 <= client.sets <= 401
    assert read_health(client) == []
