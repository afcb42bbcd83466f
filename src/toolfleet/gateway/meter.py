"""What the prompt running on this worker has spent at the gateway, and its budget."""

from __future__ import annotations

import threading

from toolfleet.errors import BudgetSpent, ProviderQuotaExhausted, ToolfleetError
from toolfleet.models import Usage

__all__ = ["Meter"]


class Meter:
    """The running prompt's model usage, read from the wire by the gateway.

    The worker opens it for each prompt (``begin``) and closes it when the answer is in
    (``end``); the gateway adds each answer's tokens and cost and asks it before sending
    a request (``refusal``): past the prompt's budget, or once the upstream's quota is
    gone, the request is refused and the prompt ends with that error. Between prompts
    (an agent's own start-up calls) usage is counted for the worker only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = False
        self._usage: Usage | None = None
        self._budget: float | None = None
        self._error: ToolfleetError | None = None
        #: everything the gateway counted on this worker, prompts or not
        self.total: Usage | None = None

    def begin(self, budget: float | None = None) -> None:
        with self._lock:
            self._open, self._usage, self._budget, self._error = True, None, budget, None

    def end(self) -> tuple[Usage | None, ToolfleetError | None]:
        """The prompt's usage (None if it made no model call) and why the gateway
        refused one of its requests (None if it did not)."""
        with self._lock:
            found = (self._usage, self._error)
            self._open, self._usage, self._budget, self._error = False, None, None, None
            return found

    def add(self, usage: Usage) -> None:
        with self._lock:
            self.total = Usage.total([self.total, usage])
            if self._open:
                self._usage = Usage.total([self._usage, usage])

    def refusal(self, cost: float) -> ToolfleetError | None:
        """Why a request that may cost ``cost`` must not be sent (the budget), or None."""
        with self._lock:
            if not self._open or self._budget is None:
                return None
            spent = self._usage.cost if self._usage is not None else 0.0
            if spent + cost <= self._budget:
                return None
            error = BudgetSpent(
                f"the model call would pass the budget: {self._budget - spent:.6f} left "
                f"for this prompt, the call costs at least {cost:.6f}"
            )
            self._error = self._error or error
            return error

    def quota_gone(self, upstream: str, said: str) -> ProviderQuotaExhausted:
        """The upstream's quota is exhausted: the prompt ends with that error."""
        error = ProviderQuotaExhausted(f"{upstream}: the provider's quota is exhausted: {said}")
        with self._lock:
            if self._open:
                self._error = self._error or error
        return error
