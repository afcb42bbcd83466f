"""A message the broker lost (a worker killed between BRPOP and its unacked record).

kombu's Redis transport pops a message before it records it as unacked; the loss is
made here exactly as a killed worker makes it: the message is popped off its queue and
never recorded. The producer finds it nowhere, twice, and sends it again: run once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from toolfleet.broker import shared_queue
from toolfleet.broker.internals import whereabouts

from ..integration.procs import Workers


@pytest.fixture
def client(workers: Workers) -> Iterator[redis.Redis]:
    """A plain Redis client on the broker."""
    with redis.Redis.from_url(workers.settings.broker_url) as client:
        yield client


def test_whereabouts_follows_the_message_from_queue_to_unacked_to_nowhere(
    workers: Workers, client: redis.Redis
) -> None:
    handle = workers.fleet.submit("hello", "echo")  # no echo worker yet: it stays queued
    queue = shared_queue("echo")
    with workers.fleet.app.connection_for_read() as conn:
        channel = conn.default_channel
        assert whereabouts(channel, handle.id, queue) == "queued"
        raw = client.rpop(queue)  # what BRPOP does
        assert raw is not None and handle.id.encode() in raw
        assert whereabouts(channel, handle.id, queue) == "nowhere"
        message = json.loads(raw)
        tag = message["properties"]["delivery_tag"]
        client.hset("unacked", tag, json.dumps([message, "", queue]))  # what qos.append does
        assert whereabouts(channel, handle.id, queue) == "unacked"
        assert whereabouts(channel, "some-other-id", queue) == "nowhere"


def test_a_lost_message_is_sent_again_and_runs_exactly_once(
    workers: Workers, client: redis.Redis, tmp_path: Path
) -> None:
    log = tmp_path / "executions.log"
    lost = workers.fleet.submit("lost one", "echo")
    kept = workers.fleet.submit("kept one", "echo")
    queue = shared_queue("echo")
    popped = client.rpop(queue)  # the first message, taken by a worker that then died
    assert popped is not None and lost.id.encode() in popped
    names = workers.start("echo", 1, ECHO_TOOL_LOG=str(log))
    workers.wait_ready(names)
    lost.check_every = kept.check_every = 0.5
    assert kept.get(timeout=60).output == "kept one"
    assert kept.resent == 0  # answered: never looked for
    started = time.monotonic()
    result = lost.get(timeout=60)
    assert result.output == "lost one" and result.prompt_id == lost.id
    assert lost.resent == 1
    assert time.monotonic() - started < 30
    assert sorted(log.read_text().splitlines()) == ["kept one", "lost one"]  # once each


def test_a_prompt_waiting_in_its_queue_is_not_sent_again(workers: Workers, tmp_path) -> None:
    log = tmp_path / "executions.log"
    handle = workers.fleet.submit("patient", "echo")
    handle.check_every = 0.3
    time.sleep(0.1)
    names = []

    def start_later() -> None:
        names.extend(workers.start("echo", 1, ECHO_TOOL_LOG=str(log)))

    timer = threading.Timer(2.0, start_later)
    timer.start()
    try:
        assert handle.get(timeout=60).output == "patient"
    finally:
        timer.join()
    assert handle.resent == 0
    assert len(log.read_text().splitlines()) == 1
