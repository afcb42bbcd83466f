"""The prompt task: thin; the work is the supervisor's, guarded against redelivery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Task, shared_task
from celery.exceptions import Reject

from toolfleet.broker import PROMPT_TASK
from toolfleet.broker.internals import DIRECT_EXCHANGE
from toolfleet.errors import NoWorkers, ToolError, ToolfleetError
from toolfleet.models import PromptResult
from toolfleet.workers import state

if TYPE_CHECKING:
    from toolfleet.workers.state import WorkerParts
    from toolfleet.workers.supervisor import Supervisor

__all__ = ["PromptReply", "PromptTask", "prompt", "summary"]


def summary(result: PromptResult, width: int = 80) -> str:
    """``ok: <first line of the output>`` (or ``exit status N: ...``), cut to ``width``."""
    head = "ok" if result.ok else "error"
    if not result.ok and result.exit_status is not None:
        head = f"exit status {result.exit_status}"
    lines = [line for line in result.output.splitlines() if line.strip()]
    # a traceback's last line says what failed; an answer's first line is its gist
    line = (lines[0] if result.ok else lines[-1]) if lines else ""
    text = f"{head}: {line}" if line else head
    return text if len(text) <= width else text[: width - 3] + "..."


class PromptReply:
    """A prompt's answer as the task returns it: stored as the PromptResult's JSON
    (kombu's encoder calls ``__json__``), shown by Celery's events and Flower as its
    one-line summary (Celery reprs a task's return value for them)."""

    __slots__ = ("data", "text")

    def __init__(self, result: PromptResult) -> None:
        self.data = result.model_dump(mode="json")
        self.text = summary(result)

    def __json__(self) -> dict[str, Any]:
        return self.data

    def __repr__(self) -> str:
        return self.text


class PromptTask(Task):  # type: ignore[misc]
    """Base class giving tasks this worker's supervisor (and through it, the tool)."""

    #: expected outcomes: logged in one line, without a traceback
    throws = (ToolfleetError,)

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
) -> dict[str, Any] | PromptReply:
    """Type ``text`` into this worker's tool and return its PromptResult.

    An answer the tool reported as failed raises ToolError (carrying the whole answer),
    so that Celery and Flower count the prompt as failed.
    """
    parts = self.parts
    sup = parts.supervisor
    if session is None and not sup.takes_shared_work:
        if (self.request.delivery_info or {}).get("exchange") != DIRECT_EXCHANGE:
            raise Reject("instance leased or failed; back to the shared queue", requeue=True)
        raise NoWorkers(f"{sup.worker} is held by session {sup.session} or not serving")
    if parts.guard is not None:
        decision = parts.guard.admit(
            self.request,
            self.AsyncResult,
            longest=(timeout or sup.profile.prompt_timeout) + sup.profile.grace,
            at_most_once=sup.profile.on_worker_lost == "fail",
        )
        if decision.error is not None:  # "raise": the first run's error, or WorkerLost
            raise decision.error
        if decision.value is not None:  # "return": the first run's answer, not a second run
            return decision.value
    prompt_id = str(self.request.id)
    result = sup.run(text, timeout=timeout, prompt_id=prompt_id, session=session, seq=seq)
    if not result.ok:
        raise ToolError(summary(result), result.model_dump(mode="json"))
    return PromptReply(result)
