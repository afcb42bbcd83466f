"""The broker's record of a delivered message survives Redis going away between the
delivery and the record (kombu#305): retried until Redis is back."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from toolfleet.broker import away
from toolfleet.broker.transport import QoS


class Pipe:
    """A pipeline whose first ``fail`` executions find Redis away."""

    def __init__(self, fail: int) -> None:
        self.fail, self.done = fail, 0

    def zadd(self, *args: Any) -> Pipe:
        return self

    def hset(self, *args: Any) -> Pipe:
        return self

    def execute(self) -> None:
        if self.fail:
            self.fail -= 1
            raise redis.ConnectionError("Connection refused")
        self.done += 1


def _qos(pipe: Pipe) -> QoS:
    channel = SimpleNamespace(unacked_index_key="idx", unacked_key="unacked", do_restore=False)
    qos = QoS(channel)

    @contextmanager
    def pipe_or_acquire(pipe_: Any = None) -> Any:
        yield pipe

    qos.pipe_or_acquire = pipe_or_acquire  # type: ignore[method-assign]
    return qos


def _message() -> Any:
    return SimpleNamespace(
        delivery_info={"exchange": "", "routing_key": "q"}, _raw={}, headers={"id": "p1"}
    )


def test_a_record_that_finds_redis_away_is_retried_until_it_is_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(away.time, "sleep", lambda s: None)
    pipe = Pipe(fail=3)
    qos = _qos(pipe)
    qos.append(_message(), "tag1")
    assert pipe.done == 1 and "tag1" in qos._delivered


def test_redis_away_for_too_long_gives_the_message_up_with_its_id(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(away, "RIDE_OUT_FOR", 0.0)
    qos = _qos(Pipe(fail=1))
    with pytest.raises(redis.ConnectionError):
        qos.append(_message(), "tag1")
    assert "delivered message p1 as unacknowledged: Redis away" in caplog.text
    assert "tag1" not in qos._delivered
