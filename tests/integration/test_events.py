"""TOOLFLEET_TASK_EVENTS: task events on (Flower's default) or off, on real workers."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import redis

from toolfleet import Fleet

from .conftest import _fresh_settings
from .procs import Workers


def task_events(url: str, fleet: Fleet, prompts: int) -> list[str]:
    """The types of the task events published while ``prompts`` prompts run."""
    with redis.Redis.from_url(url) as client, client.pubsub() as listener:
        listener.psubscribe("*celeryev*")
        while listener.get_message(timeout=0.2) is not None:
            pass  # the subscription's confirmation
        for i in range(prompts):
            assert fleet.submit(f"{i} + 1", "python").get(timeout=60).output == str(i + 1)
        seen = []
        while (message := listener.get_message(timeout=0.5)) is not None:
            if message["type"] == "pmessage":
                envelope = json.loads(message["data"])  # kombu's: the event base64-encoded
                event = json.loads(base64.b64decode(envelope["body"]))
                events = event if isinstance(event, list) else [event]  # Celery may group
                seen += [str(e.get("type")) for e in events]
        return [t for t in seen if t.startswith("task-")]


@pytest.mark.parametrize("on", [True, False])
def test_task_events_follow_the_setting(redis_server, tmp_path: Path, on: bool) -> None:  # type: ignore[no-untyped-def]
    settings = _fresh_settings(redis_server, task_events=on)
    workers = Workers(settings, tmp_path)
    try:
        workers.wait_ready(workers.start("python", 1))
        kinds = task_events(settings.broker_url, workers.fleet, 5)
    finally:
        assert workers.close() == set()
    if on:
        assert {"task-sent", "task-received", "task-started", "task-succeeded"} <= set(kinds)
    else:
        assert kinds == []
