"""The orphan sweep's rules, on a real Redis and kombu's own QoS (no workers needed)."""

from __future__ import annotations

import json
import time

import redis

from toolfleet import Settings
from toolfleet.broker import PROMPT_TASK, make_app
from toolfleet.health import write_health
from toolfleet.keys import SWEEP_LOCK
from toolfleet.models import InstanceHealth
from toolfleet.workers.sweep import OrphanSweeper


def unacked(client: redis.Redis, tag: str, prompt_id: str, age: float, task: str = PROMPT_TASK):
    message = {
        "headers": {"id": prompt_id, "task": task},
        "properties": {"delivery_tag": tag, "delivery_info": {}},
        "body": "",
    }
    client.hset("unacked", tag, json.dumps([message, "", "toolfleet.echo"]))
    client.zadd("unacked_index", {tag: time.time() - age})


def test_only_old_unanswered_prompts_held_by_no_live_worker_are_put_back(
    settings: Settings,
) -> None:
    with make_app(settings) as app, redis.Redis.from_url(settings.broker_url) as client:
        record = InstanceHealth(
            worker="alive@h", profile="echo", state="busy", worker_pid=1, generation=1,
            updated_at=time.time(), started_at=time.time(), prompts_served=0, holding=["held"],
            version="0",
        )  # fmt: skip
        write_health(client, record, ttl=30)
        unacked(client, "t-orphan", "orphan", age=60)
        unacked(client, "t-held", "held", age=60)
        unacked(client, "t-young", "young", age=0)
        unacked(client, "t-answered", "answered", age=60)
        unacked(client, "t-other", "other", age=60, task="somebody.else")
        client.set(app.backend.get_key_for_task("answered"), "{}")
        with app.connection_for_write() as conn:
            qos = conn.default_channel.qos
            sweeper = OrphanSweeper(
                client, lambda: qos, app.backend.get_key_for_task, me="me@h", interval=5, grace=3
            )
            assert sweeper.maybe_sweep() == ["orphan"]
            assert client.get(SWEEP_LOCK) == b"me@h"
            assert sweeper.maybe_sweep() == []  # not due again within its interval
        assert set(client.hkeys("unacked")) == {b"t-held", b"t-young", b"t-answered", b"t-other"}
        queued = [json.loads(raw) for raw in client.lrange("toolfleet.echo", 0, -1)]
        assert [m["headers"]["id"] for m in queued] == ["orphan"]
        assert queued[0]["headers"]["redelivered"] is True  # the guard treats it as redelivered
