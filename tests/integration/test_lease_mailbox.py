"""Leases without broadcast, on real echo workers and a real Redis: a session's lease
and release reach only the worker that holds the instance (its own mailbox: no PUBLISH,
which every worker would decode), and placing it reads a few free instances, kept by
their heartbeats, not the whole fleet."""

from __future__ import annotations

import time
from typing import Any

import redis

from toolfleet import Settings
from toolfleet.client.fleet import Fleet
from toolfleet.health import idle_instances, write_health
from toolfleet.keys import idle_key, leasebox_key

from ..helpers import eventually
from ..unit.test_render import record
from .procs import Workers


def broadcasts(pubsub: Any) -> list[Any]:
    """The messages Celery broadcast to every worker's pidbox (remote control) so far."""
    seen = []
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        if message["type"] == "pmessage":
            seen.append(message["channel"])
    return seen


def test_a_session_is_leased_and_released_through_the_workers_own_mailbox(
    workers: Workers,
) -> None:
    names = workers.start("echo", 3)
    workers.wait_ready(names)
    fleet = workers.fleet
    client = fleet.app.backend.client
    eventually(lambda: len(idle_instances(client, "echo", 8)) == 3, 30, "3 free instances")
    every = {r.worker for r in idle_instances(client, "echo", 8)}  # name@host
    listener = redis.Redis.from_url(workers.settings.broker_url)
    listening = listener.pubsub()
    listening.psubscribe("*celery.pidbox*")  # where a broadcast goes: every worker hears it
    assert broadcasts(listening) == []
    fleet.app.control.broadcast("tool_health", reply=False)  # this listener does hear one
    assert len(broadcasts(listening)) == 1
    with fleet.session("echo") as session:
        assert session.send("hello").get(timeout=30).output.strip() == "hello"
        held = session.worker
        # its heartbeat took it off the free instances; the others stay
        eventually(
            lambda: {r.worker for r in idle_instances(client, "echo", 8)} == every - {held},
            30,
            "the leased instance off the free list",
        )
    time.sleep(1)
    assert broadcasts(listening) == []  # neither the lease nor the release was broadcast
    listening.close()
    listener.close()
    assert client.llen(leasebox_key(held)) == 0  # the worker took its requests
    eventually(lambda: len(idle_instances(client, "echo", 8)) == 3, 30, "free again")


def test_free_instances_are_kept_by_the_heartbeats_and_forgotten_when_they_stop(
    settings: Settings,
) -> None:
    with Fleet(settings) as fleet:
        client = fleet.app.backend.client
        client.delete(idle_key("python"))
        write_health(client, record("p1@h"), ttl=30)
        write_health(client, record("p2@h", state="busy"), ttl=30)
        write_health(client, record("p3@h", session="s1"), ttl=30)
        write_health(client, record("p4@h"), ttl=0.2)  # stops beating
        time.sleep(0.3)
        assert [r.worker for r in idle_instances(client, "python", 8)] == ["p1@h"]
        assert client.zcard(idle_key("python")) == 1  # the stopped one's entry removed
        write_health(client, record("p1@h", state="busy"), ttl=30)
        assert idle_instances(client, "python", 8) == []
