"""kombu's Redis transport with one Redis client per channel, not one per command, and
a delivered message recorded as unacknowledged even across a Redis restart.

kombu 5.7's Redis channel builds a new ``redis.Redis`` for every publish and every ack
(``Channel.conn_or_acquire``), and redis-py fills a table of ~170 response callbacks in
each constructor: about 100 us a time, a fifth of a worker's CPU per prompt (see
``bench/PROFILE.md``). redis-py clients are safe to share between threads (each command
takes a connection from the pool), so the channel keeps one, renewed with its pool.
The fleet's app uses it through :class:`FleetAMQP`; other ``redis://`` apps are untouched.

kombu takes a message off its queue (BRPOP), then records it as unacknowledged (HSET);
Redis gone between the two (a restart) made kombu drop the message, so a prompt sent
without waiting was lost (kombu#305). :class:`QoS` retries the record until Redis is back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.app.amqp import AMQP
from kombu.connection import Connection
from kombu.transport import redis as kombu_redis

from toolfleet.broker.away import ride_out

__all__ = [
    "Channel",
    "FleetAMQP",
    "FleetConnection",
    "QoS",
    "SentinelChannel",
    "SentinelTransport",
    "Transport",
]


class _SharedClient:
    """Reuse one client for a channel's publishes and acks."""

    _shared: Any = None
    _shared_pool: Any = None
    pool: Any  # kombu's Channel has it

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        if self._shared is None or self._shared_pool is not pool:
            self._shared, self._shared_pool = self._create_client(), pool  # type: ignore[attr-defined]
        yield self._shared


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, whose record of a delivered message survives Redis going away
    between the delivery and the record: it is retried until Redis is back."""

    def append(self, message: Any, delivery_tag: Any) -> None:
        kombus: Any = super()
        task = (message.headers or {}).get("id", delivery_tag)
        ride_out(
            lambda: kombus.append(message, delivery_tag),
            f"recording delivered message {task} as unacknowledged",
        )


class Channel(_SharedClient, kombu_redis.Channel):
    """A Redis channel that reuses one client for its publishes and acks."""

    QoS = QoS


class SentinelChannel(_SharedClient, kombu_redis.SentinelChannel):
    """A Redis Sentinel channel that reuses one client for its publishes and acks."""

    QoS = QoS


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Redis Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel


class FleetConnection(Connection):
    """A kombu connection that uses :class:`Transport` for ``redis://`` and ``rediss://``,
    :class:`SentinelTransport` for ``sentinel://``."""

    def get_transport_cls(self) -> type:
        cls: type = super().get_transport_cls()  # type: ignore[no-untyped-call]
        ours: dict[type, type] = {
            kombu_redis.Transport: Transport,
            kombu_redis.SentinelTransport: SentinelTransport,
        }
        return ours.get(cls, cls)


class FleetAMQP(AMQP):  # type: ignore[misc]
    """Celery's AMQP helper making :class:`FleetConnection` connections."""

    Connection = FleetConnection
    BrokerConnection = FleetConnection
