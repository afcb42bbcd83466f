"""Duplicate-delivery guard: a prompt id is typed into a tool at most once per live claim.

Every execution first claims its task id in Redis (``SET NX`` with a TTL). A redelivered
message (Redis visibility timeout, worker lost) whose id is already claimed is not typed
again: if the first execution finished, its result is returned; if it is still running
on a live worker, that result is awaited; only if the claimer died (its health record is
gone or belongs to a newer process) is the prompt run again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..health import RedisLike, health_key

__all__ = ["CLAIM_PREFIX", "Claim", "DeliveryGuard"]

CLAIM_PREFIX = "toolfleet:claim:"


@dataclass(frozen=True)
class Claim:
    """Who runs a prompt id."""

    worker: str
    worker_pid: int


class DeliveryGuard:
    """Claims prompt ids for this worker; decides what a redelivered message does."""

    def __init__(self, client: RedisLike, me: Claim, ttl: float) -> None:
        self.client = client
        self.me = me
        self.ttl_ms = max(1000, int(ttl * 1000))

    def _value(self) -> str:
        return json.dumps({"worker": self.me.worker, "worker_pid": self.me.worker_pid})

    def claim(self, prompt_id: str) -> Claim | None:
        """Claim ``prompt_id``: None if it is ours now, else the claim that holds it."""
        key = CLAIM_PREFIX + prompt_id
        if self.client.set(key, self._value(), nx=True, px=self.ttl_ms):
            return None
        raw = self.client.get(key)
        if raw is None:  # expired just now
            return self.claim(prompt_id)
        data = json.loads(raw)
        return Claim(str(data["worker"]), int(data["worker_pid"]))

    def claimer_alive(self, claim: Claim) -> bool:
        """True while the claiming worker process still publishes health."""
        if claim == self.me:
            return True
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
