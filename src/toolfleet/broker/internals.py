"""Every use of kombu's and Celery's private internals, in one place, checked at start-up.

toolfleet reaches below Celery's public API in three places, all on kombu's Redis
transport: the ``unacked`` hash and its index (the orphan sweep, the restore on
reconnect, the exporter's gauges), the queue lists per priority step (finding a lost
message, measuring a queue), and the name of
Celery's worker_direct exchange (telling a direct prompt from a shared one).
:func:`self_check` fails loudly, at start-up, when a kombu release changes any of them;
pyproject.toml pins the kombu versions this was written for.

Finding a prompt whose broker message vanished, so that the producer can send it again:
kombu's Redis transport takes a message off its queue (``BRPOP``) and only then records
it in the ``unacked`` hash; a worker killed between the two loses the message for good
(kombu issue #305, celery issue #7950). With late acks a message is otherwise always
somewhere: in a queue list, in ``unacked`` (delivered, running, or waiting for its ack),
or answered (its result is stored before the ack). So a prompt without a result that is
in neither place, twice a few seconds apart, was lost, and sending it again under the
same id cannot run it twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from kombu.transport import redis as kombu_redis

from toolfleet.errors import ConfigError
from toolfleet.keys import text

__all__ = [
    "DIRECT_EXCHANGE",
    "LOST_CHECK_EVERY",
    "BrokerDepths",
    "Whereabouts",
    "broker_depths",
    "consumer_qos",
    "delivery_times",
    "priority_lists",
    "qos_client",
    "redis_qos",
    "restore",
    "self_check",
    "unacked_headers",
    "whereabouts",
]

#: the exchange of Celery's worker_direct queues (celery.utils.nodenames.worker_direct)
DIRECT_EXCHANGE = "C.dq2"

_CHANNEL_NAMES = (
    "conn_or_acquire",
    "_create_client",
    "_q_for_pri",
    "priority_steps",
    "unacked_key",
    "unacked_index_key",
    "pool",
)
_QOS_NAMES = ("restore_by_tag", "unacked_key", "unacked_index_key")


def self_check(transport_options: dict[str, Any] | None = None) -> None:
    """Raise ConfigError unless kombu and Celery still have what this module uses, and
    the transport options are ones it understands (``global_keyprefix`` is refused: the
    Lua look and the sweep name kombu's keys themselves)."""
    from celery.utils.nodenames import worker_direct

    missing = [n for n in _CHANNEL_NAMES if not hasattr(kombu_redis.Channel, n)]
    missing += [
        f"QoS.{n}" for n in _QOS_NAMES if n != "channel" and not hasattr(kombu_redis.QoS, n)
    ]
    if missing:
        raise ConfigError(
            "this kombu release changed its Redis transport (missing: "
            f"{', '.join(missing)}); install a kombu version pyproject.toml allows"
        )
    exchange = worker_direct("probe@host").exchange.name
    if exchange != DIRECT_EXCHANGE:
        raise ConfigError(f"Celery's worker_direct exchange is now {exchange!r}, not 'C.dq2'")
    if (transport_options or {}).get("global_keyprefix"):
        raise ConfigError("the broker transport option global_keyprefix is not supported")


def redis_qos(qos: Any) -> bool:
    """Whether ``qos`` is kombu's Redis QoS (the only transport toolfleet supports)."""
    return isinstance(qos, kombu_redis.QoS)


def consumer_qos(consumer: Any) -> Any:
    """The QoS of a Celery consumer's task channel (None until it consumes, and while its
    broker connection is being restored: the channel is closed then). The channel
    changes at every reconnect: ask again each time."""
    channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
    if channel is None or getattr(channel, "connection", None) is None:
        return None
    return getattr(channel, "qos", None)


@contextmanager
def qos_client(qos: Any) -> Iterator[Any]:
    """The Redis client of ``qos``'s channel."""
    with qos.channel.conn_or_acquire() as client:
        yield client


def unacked_headers(client: Any, qos: Any) -> dict[Any, dict[str, Any]]:
    """Delivery tag -> task headers of every unacknowledged message (unreadable ones
    are left out). ``qos`` is the kombu Redis channel's QoS."""
    found = {}
    for tag, raw in client.hgetall(qos.unacked_key).items():
        try:
            headers = json.loads(raw)[0].get("headers") or {}
        except (ValueError, IndexError, AttributeError):
            continue
        found[tag] = headers
    return found


def delivery_times(client: Any, qos: Any) -> dict[Any, float]:
    """Delivery tag -> Unix time it was delivered, for every unacknowledged message."""
    return {
        tag: float(at) for tag, at in client.zrange(qos.unacked_index_key, 0, -1, withscores=True)
    }


def restore(client: Any, qos: Any, tag: Any) -> None:
    """Put one unacknowledged message back at the head of its queue, marked redelivered."""
    qos.restore_by_tag(tag, client, leftmost=True)


#: seconds a producer waits for a result between looks for its message
LOST_CHECK_EVERY = 10.0

Whereabouts = Literal["queued", "unacked", "nowhere"]

# One atomic look: the broker cannot move the message between the places while it runs.
_WHERE = """
for _, raw in ipairs(redis.call('hvals', KEYS[1])) do
  if string.find(raw, ARGV[1], 1, true) then return 'unacked' end
end
for i = 2, #KEYS do
  for _, raw in ipairs(redis.call('lrange', KEYS[i], 0, -1)) do
    if string.find(raw, ARGV[1], 1, true) then return 'queued' end
  end
end
return 'nowhere'
"""


def priority_lists(channel: Any, queue: str) -> list[str]:
    """The Redis lists holding ``queue``'s messages, one per priority step (kombu keeps
    the levels of a queue Q in lists Q, Q\\x06\\x163, ...); ``channel`` a kombu Redis
    channel."""
    return [channel._q_for_pri(queue, step) for step in channel.priority_steps]


@dataclass(frozen=True)
class BrokerDepths:
    """What the broker holds: each queue's messages (all its priority lists), those
    delivered and not acknowledged, and when the oldest of these was delivered."""

    queue_lengths: dict[str, int]
    unacked: int
    oldest_unacked: float | None


def broker_depths(channel: Any, queues: Sequence[str]) -> BrokerDepths:
    """:class:`BrokerDepths` of ``queues`` in one pipeline; ``channel`` a kombu Redis
    channel."""
    steps = len(channel.priority_steps)
    with channel.conn_or_acquire() as client:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for name in priority_lists(channel, queue):
                pipe.llen(name)
        pipe.hlen(channel.unacked_key)
        pipe.zrange(channel.unacked_index_key, 0, 0, withscores=True)
        replies = pipe.execute()
    unacked, oldest = replies[-2], replies[-1]
    return BrokerDepths(
        queue_lengths={
            queue: sum(replies[i * steps : (i + 1) * steps]) for i, queue in enumerate(queues)
        },
        unacked=int(unacked),
        oldest_unacked=float(oldest[0][1]) if oldest else None,
    )


def whereabouts(channel: Any, prompt_id: str, queue: str) -> Whereabouts:
    """Where the broker holds the message of ``prompt_id`` sent to ``queue`` (one command).

    ``channel`` is a kombu Redis channel: its own names are used for the ``unacked`` hash
    and for the queue's lists (one per priority step). Costs one pass over the queue's
    messages inside Redis: call it for overdue prompts, not on every wait.
    """
    keys = [channel.unacked_key, *priority_lists(channel, queue)]
    with channel.conn_or_acquire() as client:
        found = client.eval(_WHERE, len(keys), *keys, prompt_id)
    place = text(found)
    if place not in ("queued", "unacked", "nowhere"):
        raise ValueError(f"unexpected answer from the broker: {place!r}")
    return place  # type: ignore[return-value]
