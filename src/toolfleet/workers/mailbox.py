"""The worker's lease mailbox: take and drop requests for its instance come on a Redis
list of its own (not a broadcast every worker decodes), answered on the list the
request names."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from toolfleet.keys import RedisLike, leasebox_key

__all__ = ["REPLY_TTL", "LeaseMailbox"]

log = logging.getLogger(__name__)

#: seconds an answer waits for its producer (who waits 5 s at most)
REPLY_TTL = 30


class LeaseMailbox:
    """Serves ``worker``'s mailbox in a thread: each request ``{"op": "take"|"drop",
    "session": ..., "base": ..., "reply": KEY}`` goes to ``take`` or ``drop`` (the
    LeaseKeeper's), whose answer is pushed on ``reply`` when the request names one."""

    def __init__(
        self,
        client: RedisLike,
        worker: str,
        take: Callable[[str, str | None], dict[str, Any]],
        drop: Callable[[str], dict[str, Any]],
        block: float = 1.0,
    ) -> None:
        self.client = client
        self.key = leasebox_key(worker)
        self.take = take
        self.drop = drop
        self.block = block
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="toolfleet-leasebox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(self.block + 5)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                popped = self.client.blpop([self.key], timeout=self.block)
            except Exception as exc:  # Redis away for a moment: look again soon
                log.warning("lease mailbox: %s", exc)
                self._stopped.wait(self.block)
                continue
            if popped is not None:
                self.serve(popped[1])

    def serve(self, raw: Any) -> None:
        """Answer one request (never raises: a bad one is logged)."""
        try:
            request = json.loads(raw)
            session = str(request["session"])
            if request.get("op") == "take":
                answer = self.take(session, request.get("base"))
            else:
                answer = self.drop(session)
            reply = request.get("reply")
            if reply:
                pipe = self.client.pipeline(transaction=False)
                pipe.rpush(reply, json.dumps(answer))
                pipe.expire(reply, REPLY_TTL)
                pipe.execute()
        except Exception as exc:
            log.error("lease mailbox: request %r: %s", raw, exc)
