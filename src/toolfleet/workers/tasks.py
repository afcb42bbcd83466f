"""The prompt task: thin; the work is the supervisor's, guarded against redelivery."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from celery import Task, shared_task
from celery.exceptions import Reject

from toolfleet.broker import CHUNK_PROGRESS, CHUNK_TASK, PROMPT_TASK
from toolfleet.broker.away import ride_out
from toolfleet.broker.internals import DIRECT_EXCHANGE
from toolfleet.errors import NoWorkers, ToolError, ToolfleetError
from toolfleet.models import PromptResult
from toolfleet.workers import state

if TYPE_CHECKING:
    from toolfleet.workers.state import WorkerParts
    from toolfleet.workers.supervisor import Supervisor

__all__ = [
    "PROGRESS_EVERY",
    "ChunkReply",
    "PromptReply",
    "PromptTask",
    "prompt",
    "prompts",
    "summary",
]

log = logging.getLogger(__name__)


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


class ChunkReply:
    """A chunk's answers as the task returns them: one entry per prompt, in order, each
    ``{"result": PromptResult}`` or ``{"error": type, "message": ..., "retryable": ...}``;
    shown by Celery's events and Flower as a count."""

    __slots__ = ("data", "text")

    def __init__(self, outcomes: list[dict[str, Any]]) -> None:
        self.data = outcomes
        ok = sum(1 for o in outcomes if o.get("result", {}).get("ok"))
        self.text = f"{len(outcomes)} prompts: {ok} ok, {len(outcomes) - ok} failed"

    def __json__(self) -> list[dict[str, Any]]:
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


def _admit(task: PromptTask, longest: float) -> Any:
    """The redelivery guard's decision for this message (None without a guard).

    Nothing is typed yet, so Redis away (restarting) is waited out: the prompt does not
    fail for it."""
    parts, sup = task.parts, task.parts.supervisor
    guard = parts.guard
    if guard is None:
        return None
    decision = ride_out(
        lambda: guard.admit(
            task.request,
            task.AsyncResult,
            longest=longest + sup.profile.grace,
            at_most_once=sup.profile.on_worker_lost == "fail",
        ),
        f"admitting prompt {task.request.id}",
    )
    if decision.error is not None:  # "raise": the first run's error, or WorkerLost
        raise decision.error
    return decision.value  # "return": the first run's answer, not a second run


@shared_task(bind=True, base=PromptTask, name=PROMPT_TASK)  # type: ignore[untyped-decorator]
def prompt(
    self: PromptTask,
    text: str,
    timeout: float | None = None,
    session: str | None = None,
    seq: int | None = None,
    budget: float | None = None,
) -> dict[str, Any] | PromptReply:
    """Type ``text`` into this worker's tool and return its PromptResult.

    An answer the tool reported as failed raises ToolError (carrying the whole answer),
    so that Celery and Flower count the prompt as failed. ``budget``: what the prompt's
    model calls may cost, kept by the worker's model gateway (BudgetSpent).
    """
    parts = self.parts
    sup = parts.supervisor
    if session is None and not sup.takes_shared_work:
        if (self.request.delivery_info or {}).get("exchange") != DIRECT_EXCHANGE:
            raise Reject("instance leased or failed; back to the shared queue", requeue=True)
        raise NoWorkers(f"{sup.worker} is held by session {sup.session} or not serving")
    first = _admit(self, timeout or sup.profile.prompt_timeout)
    if first is not None:
        return first  # type: ignore[no-any-return]
    prompt_id = str(self.request.id)
    result = sup.run(
        text, timeout=timeout, prompt_id=prompt_id, session=session, seq=seq, budget=budget
    )
    if not result.ok:
        raise ToolError(summary(result), result.model_dump(mode="json"))
    return PromptReply(result)


#: seconds between two progress records of a running chunk (the first is written at once)
PROGRESS_EVERY = 1.0


def _report_progress(task: PromptTask, done: int, last: float) -> float:
    """Record that ``done`` prompts of the chunk have finished, unless the last record
    is under :data:`PROGRESS_EVERY` old (``last``, monotonic; 0.0 for never); when
    the record was written. A producer tells a chunk at work from a lost one by it."""
    now = time.monotonic()
    if last and now - last < PROGRESS_EVERY:
        return last
    try:
        task.update_state(state=CHUNK_PROGRESS, meta={"done": done})
    except Exception as exc:  # Redis away: the chunk goes on; its result is what counts
        log.warning("chunk %s: could not record progress: %s", task.request.id, exc)
    return now


@shared_task(bind=True, base=PromptTask, name=CHUNK_TASK)  # type: ignore[untyped-decorator]
def prompts(
    self: PromptTask, texts: list[str], timeout: float | None = None
) -> list[dict[str, Any]] | ChunkReply:
    """Type each of ``texts`` into this worker's tool in order; one outcome per text.

    A prompt that fails (its tool crashed, timed out, reported an error) fails alone:
    the next runs on the instance as the supervisor has restarted it. Prompt ``i`` runs
    as ``<chunk id>:<i>`` (its stream, the health record's ``prompt_id``).
    """
    sup = self.supervisor
    if not sup.takes_shared_work:  # chunks come only through the shared queue
        raise Reject("instance leased or failed; back to the shared queue", requeue=True)
    first = _admit(self, len(texts) * (timeout or sup.profile.prompt_timeout))
    if first is not None:
        return first  # type: ignore[no-any-return]
    outcomes: list[dict[str, Any]] = []
    reported = _report_progress(self, 0, 0.0)
    for i, text in enumerate(texts):
        if i:
            reported = _report_progress(self, i, reported)
        try:
            result = sup.run(text, timeout=timeout, prompt_id=f"{self.request.id}:{i}")
        except ToolfleetError as exc:
            error = {"error": type(exc).__name__, "message": exc.message}
            outcomes.append({**error, "retryable": exc.retryable})
        else:
            outcomes.append({"result": result.model_dump(mode="json")})
    return ChunkReply(outcomes)
