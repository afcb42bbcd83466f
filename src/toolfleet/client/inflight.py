"""A bulk run's messages in flight: when each one's next result is due, and looks for
the ones the broker lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from toolfleet.broker.internals import LOST_CHECK_EVERY
from toolfleet.client.attempts import Slot
from toolfleet.errors import RedisUnavailable

__all__ = ["InFlight", "message_of"]

log = logging.getLogger(__name__)


def message_of(slot: Slot) -> Any:
    """What carries ``slot``'s prompt: its chunk's handle if in one, else its own."""
    return getattr(slot.handle, "chunk", None) or slot.handle


@dataclass
class _Message:
    """One message in flight and what its producer knows of it."""

    carrier: Any
    items: int  # the run's items it carries that have no outcome yet
    prompts: int  # prompts it carries
    wait: float  # seconds one of its results may take
    deadline: float  # monotonic: when it counts as lost if no worker has started it
    since: float  # monotonic: when the prompt it is at began (a worker's progress seen)
    done: int | None  # progress last seen (a chunk's prompts finished); None: not started
    next_look: float  # monotonic: when to look for it next


class InFlight:
    """The messages of a bulk run in flight, by id.

    A message's results are due:

    - while no worker has started it: within its prompts' result timeouts from when it
      was sent (a chunk may wait behind others in its queue);
    - once a worker reports it started (a chunk records how many of its prompts have
      finished): within one result timeout of the last progress seen, so a chunk whose
      worker is gone is given up after one prompt's time, not the whole chunk's.

    Every ``every`` seconds each message is looked for (:meth:`look`): one the broker
    lost (nowhere at two looks in a row) is sent again under its id at once.
    """

    def __init__(self, every: float = LOST_CHECK_EVERY) -> None:
        self.every = every
        #: messages sent again because the broker had lost them
        self.resent = 0
        self._messages: dict[str, _Message] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def add(self, slot: Slot) -> None:
        """Count ``slot``'s item in its message (the first item adds the message)."""
        carrier = message_of(slot)
        message = self._messages.get(carrier.id)
        if message is not None:
            message.items += 1
            return
        prompts = len(getattr(carrier, "items", ())) or 1
        self._messages[carrier.id] = _Message(
            carrier=carrier,
            items=1,
            prompts=prompts,
            wait=(slot.deadline - slot.submitted) / prompts,
            deadline=slot.deadline,
            since=slot.submitted,
            done=None,
            next_look=slot.submitted + self.every,
        )

    def remove(self, slot: Slot) -> None:
        """``slot``'s item has its outcome (the last item removes its message)."""
        key = message_of(slot).id
        message = self._messages[key]
        message.items -= 1
        if not message.items:
            del self._messages[key]

    def clear(self) -> None:
        self._messages.clear()

    def overdue(self, slot: Slot, now: float) -> bool:
        """True when ``slot``'s result is overdue: counts as lost. A message about to be
        given up on is looked at once more first (it may have moved on since)."""
        message = self._messages.get(message_of(slot).id)
        if message is None:
            return now > slot.deadline
        if not self._late(message, now):
            return False
        self._look(message, now)
        return self._late(message, now)

    def look(self, now: float) -> None:
        """Look for every message whose turn it is (see :class:`InFlight`)."""
        for message in list(self._messages.values()):
            if now >= message.next_look:
                self._look(message, now)

    @staticmethod
    def _late(message: _Message, now: float) -> bool:
        if message.done is None:
            return now > message.deadline
        return now > message.since + message.wait

    def _look(self, message: _Message, now: float) -> None:
        message.next_look = now + self.every
        carrier = message.carrier
        lost = getattr(carrier, "lost", None)  # a LostWatch: prompts and chunks have one
        progress = getattr(carrier, "progress", None)
        try:
            if lost is not None:
                before = lost.resent
                lost.look(carrier.ready)
                if lost.resent != before:  # sent again: its time starts over
                    self.resent += 1
                    message.deadline = now + message.wait * message.prompts
                    message.since, message.done = now, None
                    return
            done = progress() if progress is not None else None
        except RedisUnavailable as exc:  # Redis away for now: look again later
            log.warning("could not look for message %s: %s", carrier.id, exc)
            return
        if done is not None and done != message.done:
            message.since, message.done = now, done
