"""Messages the broker lost: where a prompt's (or a chunk's) message is, and sending it
again once it is nowhere."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from toolfleet.broker.internals import Whereabouts, whereabouts
from toolfleet.client.unavailable import redis_errors
from toolfleet.settings import Settings

__all__ = ["LostWatch"]

log = logging.getLogger(__name__)


class LostWatch:
    """Looks for one shared-queue message while its producer waits for the result.

    Each :meth:`look` asks the broker where the message is (queued, delivered and not
    acknowledged, or nowhere). A message nowhere at two looks in a row while its result
    is not there was lost (a worker killed between taking it and recording it, a Redis
    restart that lost it): it is sent again under the same id, and ``resent`` counts it.
    The redelivery guard of the workers keeps a prompt that did run from running twice
    where its profile says so.
    """

    def __init__(
        self,
        app: Any,
        settings: Settings,
        task: str,
        message_id: str,
        resend: dict[str, Any] | None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.task = task
        self.message_id = message_id
        #: how to send the message again (``send_task`` keywords: kwargs, queue, reprs);
        #: None for a message pinned to one worker, which is not sent elsewhere
        self.resend = resend
        #: how many times it was sent again
        self.resent = 0
        #: where the last look found it (None before the first)
        self.place: Whereabouts | None = None
        self._missing = False

    def look(self, ready: Callable[[], bool]) -> Whereabouts | None:
        """Where the message is now (None if it cannot be sent again); send it again if
        it was nowhere at this look and the last and ``ready()`` is still false."""
        if self.resend is None:
            return None
        with redis_errors(self.settings), self.app.pool.acquire(block=True) as conn:
            place = whereabouts(conn.default_channel, self.message_id, self.resend["queue"])
        missing = place == "nowhere" and not ready()
        if missing and self._missing:
            log.warning("message %s: lost by the broker; sending it again", self.message_id)
            with redis_errors(self.settings):
                self.app.send_task(self.task, task_id=self.message_id, **self.resend)
            self.resent += 1
            missing = False
            place = "queued"
        self._missing = missing
        self.place = place
        return place
