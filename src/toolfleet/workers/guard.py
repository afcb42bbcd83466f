"""Duplicate-delivery guard: a prompt id is typed into a tool at most once per live claim.

A redelivered message (Redis visibility timeout, worker lost) is not typed again if its
first execution finished (its result, or its error, is returned) or is still running on
a live worker (that result is awaited); only if that execution's worker died (its health
record is gone or belongs to a newer process) is the prompt run again.

To know who runs a prompt, an execution claims its id in Redis (``SET NX`` with a TTL),
but only when the prompt may outlive the visibility timeout: a prompt whose deadline
ends well before it cannot be redelivered while it runs, so short prompts cost no
Redis command here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolfleet.keys import CLAIM_PREFIX, RedisLike, health_key

__all__ = ["CLAIM_PREFIX", "Claim", "DeliveryGuard"]


@dataclass(frozen=True)
class Claim:
    """Who runs a prompt id."""

    worker: str
    worker_pid: int


class DeliveryGuard:
    """Claims prompt ids for this worker; decides what a redelivered message does."""

    def __init__(self, client: RedisLike, me: Claim, ttl: float, visibility_timeout: float) -> None:
        self.client = client
        self.me = me
        self.ttl_ms = max(1000, int(ttl * 1000))
        self.visibility_timeout = visibility_timeout

    def needs_claim(self, longest: float) -> bool:
        """Whether a prompt that may take ``longest`` seconds could be redelivered meanwhile."""
        return longest >= self.visibility_timeout / 2

    def holder(self, prompt_id: str) -> Claim | None:
        """The claim on ``prompt_id``, if any."""
        raw = self.client.get(CLAIM_PREFIX + prompt_id)
        if raw is None:
            return None
        data = json.loads(raw)
        return Claim(str(data["worker"]), int(data["worker_pid"]))

    def _value(self) -> str:
        return json.dumps({"worker": self.me.worker, "worker_pid": self.me.worker_pid})

    def claim(self, prompt_id: str) -> Claim | None:
        """Claim ``prompt_id``: None if it is ours now, else the claim that holds it."""
        if self.client.set(CLAIM_PREFIX + prompt_id, self._value(), nx=True, px=self.ttl_ms):
            return None
        return self.holder(prompt_id) or self.claim(prompt_id)

    def claimer_alive(self, claim: Claim) -> bool:
        """True while the claiming worker process still publishes health.

        Our own claim means an earlier execution here ended without a result: not alive.
        """
        if claim == self.me:
            return False
        raw = self.client.get(health_key(claim.worker))
        return raw is not None and json.loads(raw).get("worker_pid") == claim.worker_pid

    def take_over(self, prompt_id: str) -> None:
        """Claim a prompt id whose claimer died."""
        self.client.set(CLAIM_PREFIX + prompt_id, self._value(), px=self.ttl_ms)

    def first_outcome(
        self,
        prompt_id: str,
        claim: Claim,
        ready: Callable[[], bool],
        outcome: Callable[[], Any],
        timeout: float,
        poll: float = 0.2,
    ) -> tuple[bool, Any]:
        """Wait for the first execution: (True, its outcome) or (False, None) if it died."""
        end = time.monotonic() + timeout
        while True:
            if ready():
                return True, outcome()
            if not self.claimer_alive(claim) or time.monotonic() > end:
                return False, None
            time.sleep(poll)
