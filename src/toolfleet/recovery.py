"""Finding a prompt whose broker message vanished, so that the producer can send it again.

kombu's Redis transport takes a message off its queue (``BRPOP``) and only then records
it in the ``unacked`` hash; a worker killed between the two loses the message for good
(kombu issue #305, celery issue #7950). With late acks a message is otherwise always
somewhere: in a queue list, in ``unacked`` (delivered, running, or waiting for its ack),
or answered (its result is stored before the ack). So a prompt without a result that is
in neither place, twice a few seconds apart, was lost, and sending it again under the
same id cannot run it twice.
"""

from __future__ import annotations

from typing import Literal

from .health import RedisLike

__all__ = ["LOST_CHECK_EVERY", "UNACKED_KEY", "Whereabouts", "queue_keys", "whereabouts"]

#: seconds a producer waits for a result between looks for its message
LOST_CHECK_EVERY = 10.0
#: kombu's Redis transport keeps delivered, unacknowledged messages in this hash
UNACKED_KEY = "unacked"
# kombu's Redis transport keeps one list per priority step: name, name\x06\x163, ...
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)

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


def queue_keys(queue: str) -> list[str]:
    """The Redis lists holding ``queue``'s messages (one per kombu priority step)."""
    return [queue if step == 0 else f"{queue}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS]


def whereabouts(client: RedisLike, prompt_id: str, queue: str) -> Whereabouts:
    """Where the broker holds the message of ``prompt_id`` sent to ``queue`` (one command).

    Costs one pass over the queue's messages inside Redis: call it for overdue prompts,
    not on every wait.
    """
    keys = [UNACKED_KEY, *queue_keys(queue)]
    found = client.eval(_WHERE, len(keys), *keys, prompt_id)
    place = found.decode() if isinstance(found, bytes) else str(found)
    if place not in ("queued", "unacked", "nowhere"):
        raise ValueError(f"unexpected answer from the broker: {place!r}")
    return place  # type: ignore[return-value]
