"""Duplicate-delivery guard: a prompt id is typed into a tool at most once per live claim.

A redelivered message (Redis visibility timeout, worker lost) is not typed again if its
first execution finished (its result, or its error, is returned) or is still running on
a live worker (that result is awaited); only if that execution's worker died (its health
record is gone or belongs to a newer process) is the prompt run again.

To know who runs a prompt, an execution claims its id in Redis (``SET NX`` with a TTL),
but only when the prompt may outlive the visibility timeout or its profile runs prompts
at most once: a prompt whose deadline ends well before it cannot be redelivered while it
runs, so short prompts cost no Redis command here. ``DeliveryGuard.admit`` makes the
whole decision for each delivery; the task acts on its ``Decision``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from toolfleet.errors import WorkerLost
from toolfleet.keys import CLAIM_PREFIX, RedisLike, health_key

__all__ = [
    "CLAIM_PREFIX",
    "CLAIM_TRIES",
    "Claim",
    "Decision",
    "Delivery",
    "DeliveryGuard",
    "FirstRun",
]

#: SET NX attempts before ``claim`` gives up (a retry follows a claim that expired between
#: its SET NX and its GET; more than one in a row means something keeps deleting it)
CLAIM_TRIES = 3


@dataclass(frozen=True)
class Claim:
    """Who runs a prompt id."""

    worker: str
    worker_pid: int


@dataclass(frozen=True)
class Decision:
    """What a delivered prompt does: ``run`` (type it into the tool), ``return`` the first
    run's answer (``value``), or ``raise`` ``error`` (the first run's error, or WorkerLost).
    """

    kind: Literal["run", "return", "raise"]
    value: dict[str, Any] | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        wanted = (self.kind == "return", self.kind == "raise")
        if wanted != (self.value is not None, self.error is not None):
            raise ValueError(f"inconsistent decision: {self!r}")


#: the decision of every first delivery, and of a prompt taken over
RUN = Decision("run")


class Delivery(Protocol):
    """What the guard reads of a Celery task request."""

    @property
    def id(self) -> Any: ...

    @property
    def delivery_info(self) -> Mapping[str, Any] | None: ...


class FirstRun(Protocol):
    """The stored result of a prompt's first execution (Celery's ``AsyncResult``)."""

    def ready(self) -> bool: ...

    @property
    def result(self) -> Any: ...


class DeliveryGuard:
    """Claims prompt ids for this worker; decides what each delivery of a prompt does."""

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
        """Claim ``prompt_id``: None if it is ours now, else the claim that holds it.

        A claim that expires between the SET NX and the GET is claimed again, up to
        CLAIM_TRIES attempts in all; RuntimeError if it keeps vanishing.
        """
        for _ in range(CLAIM_TRIES):
            if self.client.set(CLAIM_PREFIX + prompt_id, self._value(), nx=True, px=self.ttl_ms):
                return None
            holder = self.holder(prompt_id)
            if holder is not None:
                return holder
        raise RuntimeError(
            f"could not claim prompt {prompt_id} in {CLAIM_TRIES} tries: its claim"
            f" ({CLAIM_PREFIX}{prompt_id}) exists at each SET NX and is gone at each GET"
        )

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

    def admit(
        self,
        request: Delivery,
        results: Callable[[str], FirstRun],
        *,
        longest: float,
        at_most_once: bool,
    ) -> Decision:
        """Decide what the delivery ``request`` of a prompt does.

        A first delivery runs, claiming the prompt if it may take ``longest`` seconds or
        more than half the visibility timeout, or if the profile runs prompts
        ``at_most_once``. A redelivered one returns (or raises) the first run's outcome
        (``results(prompt_id)``) once it is ready, awaiting it while its claimer lives
        (``longest`` + 5 s at most); if no result came, it raises WorkerLost for a claimed
        ``at_most_once`` prompt, else it takes the prompt over and runs.
        """
        prompt_id = str(request.id)
        if not (request.delivery_info or {}).get("redelivered"):
            if at_most_once or self.needs_claim(longest):
                self.claim(prompt_id)
            return RUN
        first = results(prompt_id)
        holder = self.holder(prompt_id)
        if first.ready() or (holder is not None and self.claimer_alive(holder)):
            done, outcome = self.first_outcome(
                prompt_id,
                holder or self.me,
                first.ready,
                lambda: first.result,
                timeout=longest + 5,
            )
            if done:  # the first execution's result (or its error), not a second run
                if isinstance(outcome, BaseException):
                    return Decision("raise", error=outcome)
                return Decision("return", value=dict(outcome))
        if holder is not None and at_most_once:
            return Decision(
                "raise",
                error=WorkerLost(
                    f"worker {holder.worker} was lost while running this prompt; not run again"
                    " (the profile's on_worker_lost is 'fail')"
                ),
            )
        self.take_over(prompt_id)
        return RUN
