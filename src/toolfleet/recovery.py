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

from typing import Any, Literal

__all__ = ["LOST_CHECK_EVERY", "Whereabouts", "whereabouts"]

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


def whereabouts(channel: Any, prompt_id: str, queue: str) -> Whereabouts:
    """Where the broker holds the message of ``prompt_id`` sent to ``queue`` (one command).

    ``channel`` is a kombu Redis channel: its own names are used for the ``unacked`` hash
    and for the queue's lists (one per priority step). Costs one pass over the queue's
    messages inside Redis: call it for overdue prompts, not on every wait.
    """
    steps = channel.priority_steps
    keys = [channel.unacked_key, *(channel._q_for_pri(queue, step) for step in steps)]
    with channel.conn_or_acquire() as client:
        found = client.eval(_WHERE, len(keys), *keys, prompt_id)
    place = found.decode() if isinstance(found, bytes) else str(found)
    if place not in ("queued", "unacked", "nowhere"):
        raise ValueError(f"unexpected answer from the broker: {place!r}")
    return place  # type: ignore[return-value]
