"""The heartbeat writes on state changes and intervals, coalescing bursts."""

from __future__ import annotations

import json
import threading
import time
from itertools import pairwise

from toolfleet.health import read_health
from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool.fake import FakeInstance
from toolfleet.workers.heartbeat import Heartbeat
from toolfleet.workers.supervisor import Supervisor

from ..helpers import eventually


class DictRedis:
    """The few commands health records use, in memory; remembers every write."""

    def __init__(self):
        self.data: dict[str, tuple[str, float]] = {}
        self.zsets: dict[str, dict[str, float]] = {}
        self.lists: dict[str, list[str]] = {}
        #: (time.monotonic(), the state written) of each write, in order
        self.writes: list[tuple[float, str]] = []

    def set(self, name, value, px=None):
        now = time.monotonic()
        self.writes.append((now, json.loads(value)["state"]))
        self.data[name] = (value, now + px / 1000)

    def delete(self, name):
        self.data.pop(name, None)

    def mget(self, keys):
        return [self.get(k) for k in keys]

    def get(self, name):
        value, exp = self.data.get(name, (None, 0.0))
        return value if exp > time.monotonic() else None

    def zadd(self, name, mapping):
        self.zsets.setdefault(name, {}).update(mapping)

    def zrem(self, name, *members):
        for member in members:
            self.zsets.get(name, {}).pop(member, None)

    def zremrangebyscore(self, name, low, high):
        assert low == "-inf" and high.startswith("(")
        zset = self.zsets.get(name, {})
        for member in [m for m, score in zset.items() if score < float(high[1:])]:
            del zset[member]

    def zrangebyscore(self, name, low, high):
        assert high == "+inf"
        return sorted(m for m, score in self.zsets.get(name, {}).items() if score >= low)

    def lpush(self, name, *values):
        self.lists.setdefault(name, [])[:0] = list(reversed(values))

    def ltrim(self, name, start, end):
        self.lists[name] = self.lists.get(name, [])[start : end + 1]

    def pexpire(self, name, ms):
        pass

    def pipeline(self, transaction=True):
        return _Pipeline(self)


class _Pipeline:
    """Commands queued on a :class:`DictRedis`, run by ``execute``."""

    def __init__(self, client):
        self.client = client
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def execute(self):
        return [getattr(self.client, n)(*a, **k) for n, a, k in self.calls]


def test_heartbeat_publishes_and_stops():
    client = DictRedis()
    sup = Supervisor(FakeInstance(BUILTIN_PROFILES["echo"]), "w1@h", ["toolfleet.echo"])
    beat = Heartbeat(client, sup.health, interval=0.1)
    sup.subscribe(lambda old, new: beat.notify())
    beat.start()
    sup.start()
    try:
        # the first write, one for the state change, then one an interval
        eventually(lambda: len(client.writes) >= 5, 10, "5 writes")
        (record,) = read_health(client)
        assert record.worker == "w1@h" and record.state == "ready"
        writes = list(client.writes)
    finally:
        sup.stop()
        beat.stop()
    assert read_health(client) == []
    states = [state for _, state in writes]
    assert states[0] == "starting" and set(states[1:]) == {"ready"}, states
    # coalescing: apart from the write for the one state change, the writes (the first
    # and those repeating the state written before) are at least an interval apart
    again = [writes[0][0]] + [t for (_, prev), (t, s) in pairwise(writes) if s == prev]
    gaps = [b - a for a, b in pairwise(again)]
    assert len(gaps) >= 3 and min(gaps) >= beat.interval, gaps


def test_fast_prompts_cost_no_writes_but_a_long_one_shows_busy():
    client = DictRedis()
    release = threading.Event()

    def respond(text):
        if text == "slow":
            assert release.wait(10)
        return text

    sup = Supervisor(FakeInstance(BUILTIN_PROFILES["echo"], respond), "w1@h", [])
    sup.start()  # before the heartbeat: no state change is pending when it starts
    looking = threading.Lock()  # held while prompts run that the heartbeat must not see

    def state():
        with looking:
            return sup.state

    beat = Heartbeat(client, sup.health, interval=60, state=state)
    went_busy: list[float] = []
    sup.subscribe(lambda old, new: new == "busy" and went_busy.append(time.monotonic()))
    sup.subscribe(lambda old, new: beat.notify())
    beat.start()

    def slow_prompt() -> None:
        """A prompt that stays busy until its busy record is seen."""
        release.clear()
        runner = threading.Thread(target=sup.run, args=("slow",))
        runner.start()
        eventually(lambda: read_health(client)[0].state == "busy", 10, "the busy record")
        release.set()
        runner.join()
        eventually(lambda: read_health(client)[0].state == "ready", 10, "the ready record")

    try:
        slow_prompt()
        # a state change is written once it has lasted the debounce time, not at once
        busy_written = next(t for t, s in client.writes if s == "busy")
        assert busy_written - went_busy[-1] >= beat.debounce - 0.001
        with looking:  # 400 state changes, all back to 'ready' when the heartbeat looks
            for i in range(200):
                sup.run(str(i))
        slow_prompt()  # its writes come after any the 200 prompts caused
        written = [s for _, s in client.writes]
    finally:
        sup.stop()
        beat.stop()
    assert written == ["ready", "busy", "ready", "busy", "ready"]  # none for the 200
    assert read_health(client) == []


def test_a_word_goes_out_each_time_the_instance_becomes_free_for_a_session():
    client = DictRedis()
    sup = Supervisor(FakeInstance(BUILTIN_PROFILES["echo"]), "w1@h", ["toolfleet.echo"])
    now: list[tuple[str, str | None]] = [("starting", None)]
    beat = Heartbeat(
        client,
        sup.health,
        interval=60,
        state=lambda: now[0],
        free=lambda state: state == ("ready", None),
    )
    words = []
    for state in [
        ("starting", None),
        ("ready", None),  # started: free
        ("ready", None),  # an interval's write: still free, no word
        ("busy", None),
        ("ready", None),  # free again
        ("ready", "s1"),  # leased
        ("restarting", None),  # reset after the session
        ("ready", None),  # free again
    ]:
        now[0] = state
        beat.beat()
        words.append(list(client.lists.get("toolfleet:free:echo", [])))
    assert [len(w) for w in words] == [0, 1, 1, 1, 2, 2, 2, 3]
    assert set(words[-1]) == {"w1@h"}
    # the record is written in the same round trip, before the word
    assert read_health(client, "w1@h") is not None
