"""The prompt task: thin; the work is the supervisor's, guarded against redelivery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Task, shared_task
from celery.exceptions import Reject

from .broker import PROMPT_TASK
from .errors import NoWorkers
from .workers import state

if TYPE_CHECKING:
    from .workers.state import WorkerParts
    from .workers.supervisor import Supervisor

__all__ = ["PromptTask", "prompt"]

_DIRECT_EXCHANGE = "C.dq2"  # Celery's worker_direct exchange


class PromptTask(Task):  # type: ignore[misc]
    """Base class giving tasks this worker's supervisor (and through it, the tool)."""

    @property
    def parts(self) -> WorkerParts:
        return state.parts()

    @property
    def supervisor(self) -> Supervisor:
        return state.current()


@shared_task(bind=True, base=PromptTask, name=PROMPT_TASK)  # type: ignore[untyped-decorator]
def prompt(
    self: PromptTask,
    text: str,
    timeout: float | None = None,
    session: str | None = None,
    seq: int | None = None,
) -> dict[str, Any]:
    """Type ``text`` into this worker's tool and return its PromptResult as a dict."""
    parts = self.parts
    sup = parts.supervisor
    if session is None and not sup.takes_shared_work:
        if (self.request.delivery_info or {}).get("exchange") != _DIRECT_EXCHANGE:
            raise Reject("instance leased or failed; back to the shared queue", requeue=True)
        raise NoWorkers(f"{sup.worker} is held by session {sup.session} or not serving")
    prompt_id = str(self.request.id)
    if parts.guard is not None:
        holder = parts.guard.claim(prompt_id)
        if holder is not None:
            first = self.AsyncResult(prompt_id)
            done, outcome = parts.guard.first_outcome(
                prompt_id,
                holder,
                first.ready,
                lambda: first.get(propagate=False),
                timeout=(timeout or sup.profile.prompt_timeout) + sup.profile.grace + 5,
            )
            if done:  # the first execution's result (or its error), not a second run
                if isinstance(outcome, BaseException):
                    raise outcome
                return dict(outcome)
            parts.guard.take_over(prompt_id)
    result = sup.run(text, timeout=timeout, prompt_id=prompt_id, session=session, seq=seq)
    return result.model_dump(mode="json")
