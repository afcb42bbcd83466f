"""A multi-step item in flight: its steps run in order on one leased instance."""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from toolfleet.broker.away import ride_out
from toolfleet.client.items import MapItem
from toolfleet.client.journal import Journal
from toolfleet.client.verify import CheckSpec, check_and_repair
from toolfleet.errors import (
    ChangeNotRecorded,
    CheckFailed,
    NoWorkers,
    RedisUnavailable,
    ResultTimeout,
    SessionLost,
    ToolCrashed,
    ToolfleetError,
    WorkerLost,
)
from toolfleet.models import Changes, CheckResult, PromptResult

__all__ = ["SessionOpener", "StepThreads", "StepsHandle"]

#: seconds between looks at the instance's health while a step runs
_LOOK_EVERY = 2.0


class SessionOpener(Protocol):
    """A fleet that opens sessions (``Fleet.session``)."""

    def session(
        self,
        profile: str = ...,
        *,
        wait: float = ...,
        budget: float | None = ...,
        base: str | None = ...,
    ) -> Any: ...


class StepThreads:
    """The threads a bulk run's multi-step items run in, kept from item to item: Celery
    gives each thread a result backend of its own (a connection pool, a pub/sub
    connection), made on the thread's first use; a thread an item made and closed one
    backend an item. ``release`` (``Fleet.release_thread``) closes a thread's backend
    when :meth:`close` ends it."""

    def __init__(self, release: Callable[[], None] | None = None) -> None:
        self.release = release
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []

    @property
    def idle(self) -> int:
        """Threads waiting for a job."""
        return self._idle

    def run(self, job: Callable[[], None]) -> None:
        """Run ``job`` in an idle thread, or in a new one if none is idle."""
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                name = f"toolfleet-steps-{len(self._threads)}"
                thread = threading.Thread(target=self._loop, name=name, daemon=True)
                self._threads.append(thread)
                thread.start()
        self._jobs.put(job)

    def close(self) -> None:
        """End the threads once their jobs are done (without waiting for them)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)

    def _loop(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                try:
                    job()
                finally:
                    with self._lock:
                        self._idle += 1
        finally:
            if self.release is not None:
                with contextlib.suppress(Exception):
                    self.release()


class StepsHandle:
    """Runs one item's ``steps`` in a thread of ``threads``, inside a session (an
    exclusive lease on one instance, reset before anyone else uses it), stopping at the
    first step whose answer is not ok. Behaves as the handle of one prompt for a bulk
    run: ``ready()`` when the item has ended; ``get()`` returns the last step's result or
    raises what stopped it; ``results`` lists every step's result.

    An instance lost under the item (its worker killed, frozen or cut off, its tool
    restarted) raises a retryable ToolCrashed: the item runs again, whole, on a reset
    instance; with ``at_most_once`` (the profile's ``on_worker_lost = "fail"``) it
    raises WorkerLost, not run again. Either way the session is given up, so the lost
    instance never records its change, whenever it comes back (``changes`` waits for
    the record: :meth:`ChangeBook.settle`).

    With ``check`` (a worktree profile) the check runs after the steps, with repair
    turns (:func:`check_and_repair`): ``check_result`` and ``repairs`` say how it ended;
    a check still failing ends the item with CheckFailed (its change is ``rejected``).
    """

    def __init__(
        self,
        fleet: SessionOpener,
        steps: tuple[str, ...],
        profile: str,
        *,
        timeout: float | None,
        step_wait: float,
        lease_wait: float,
        threads: StepThreads,
        changes: Callable[[str, str], Changes | None] | None = None,
        budget: float | None = None,
        check: CheckSpec | None = None,
        item: MapItem | None = None,
        at_most_once: bool = False,
        journal: Journal | None = None,
    ) -> None:
        self.fleet = fleet
        self.steps = steps
        self.profile = profile
        self.timeout = timeout
        self.step_wait = step_wait
        self.lease_wait = lease_wait
        #: what the item's model calls may cost, all steps together (its session's budget)
        self.budget = budget
        self.results: list[PromptResult] = []
        #: the item's change record (a worktree profile), once its session ended
        self.changes: Changes | None = None
        self._changes = changes
        self.error: ToolfleetError | None = None
        self.at_most_once = at_most_once
        self.journal = journal
        self.check = check
        self.item = item or MapItem(key="", text="\n".join(steps), steps=steps)
        #: the item's last check, and the repair steps sent before it
        self.check_result: CheckResult | None = None
        self.repairs = 0
        self._id = f"steps-{uuid.uuid4()}"
        self._done = threading.Event()
        self._cancelled = threading.Event()
        threads.run(self._run)

    @property
    def id(self) -> str:
        return self._id

    def ready(self) -> bool:
        return self._done.is_set()

    def get(self, timeout: float | None = None) -> PromptResult:
        if not self._done.wait(timeout):
            raise ResultTimeout(f"item {self._id} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.results[-1]

    def cancel(self) -> None:
        """Send no further step (the one running ends as it would)."""
        self._cancelled.set()

    # ---- the thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            options: dict[str, Any] = {"wait": self.lease_wait, "budget": self.budget}
            if self.item.base is not None:
                options["base"] = self.item.base
            session = self._open(options)
            keep = False
            try:
                for number, text in enumerate(self.steps, 1):
                    if self._cancelled.is_set():
                        raise ToolfleetError(f"cancelled before step {number}")
                    result = self._step(session, number, text)
                    self.results.append(result)
                    if not result.ok:
                        break
                if self.check is not None and self.results[-1].ok:
                    self._verify(session, self.check)
                keep = True
            finally:
                # every step sent was awaited, or its instance is lost: no wait; a
                # session that ended on an error is given up (nothing of it recorded);
                # one kept is journaled first, for a re-run if this one stops now
                if keep and self.journal is not None and self._changes is not None:
                    self.journal.intend(self.item.key, session.id)
                session.close(wait=0.0, keep=keep)
            if self._changes is not None:
                try:
                    self.changes = self._changes(session.id, session.worker)
                except ChangeNotRecorded as exc:
                    raise self._lost_error(exc.message) from exc
            checked = self.check_result
            if checked is not None and not checked.passed:
                turns = f" after {self.repairs} repair turn(s)" if self.repairs else ""
                last = checked.output.strip().splitlines()[-1:] or [""]
                self.error = CheckFailed(
                    f"the check `{checked.command}` failed{turns}: exit status "
                    f"{checked.exit_status}: {last[0]}"
                )
        except SessionLost as exc:
            self.error = self._lost_error(self._lost(exc.message))
        except ToolfleetError as exc:
            self.error = exc
        except Exception as exc:  # reported as the item's error, never lost
            self.error = ToolfleetError(f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    def _open(self, options: dict[str, Any]) -> Any:
        """The item's session; opened again while Redis is away (a failover, a restart:
        nothing was leased then), for up to :data:`RIDE_OUT_FOR` s."""
        return ride_out(
            lambda: self.fleet.session(self.profile, **options),
            f"item {self.item.key}: opening a session",
            errors=(RedisUnavailable,),
        )

    def _lost_error(self, why: str) -> ToolCrashed:
        """The error of an item whose instance (or its change) was lost: run again, or,
        ``at_most_once``, not."""
        if self.at_most_once:
            return WorkerLost(f"{why} (the profile's on_worker_lost is 'fail': not run again)")
        return ToolCrashed(f"{why}; the item runs again, whole, on a reset instance")

    def _verify(self, session: Any, check: CheckSpec) -> None:
        """The check, and repair steps while it fails (:func:`check_and_repair`)."""

        def repair(text: str) -> PromptResult:
            if self._cancelled.is_set():
                raise ToolfleetError("cancelled before a repair step")
            answer = self._step(session, len(self.results) + 1, text)
            self.results.append(answer)
            self.repairs += 1
            return answer

        try:
            self.check_result = check_and_repair(session, check, self.item, repair)
        except NoWorkers as exc:  # its worker died during the check
            raise self._lost_error(self._lost(exc.message)) from exc

    def _step(self, session: Any, number: int, text: str) -> PromptResult:
        """Send step ``number`` and wait for it, looking at the instance's health."""
        handle = session.send(text, timeout=self.timeout)
        waited = 0.0
        while True:
            try:
                result: PromptResult = handle.get(timeout=_LOOK_EVERY)
                return result
            except NoWorkers as exc:  # the worker's health record is gone: it died
                raise self._lost_error(self._lost(exc.message, number)) from exc
            except ResultTimeout:
                waited += _LOOK_EVERY
                if waited >= self.step_wait:
                    raise

    def _lost(self, why: str, number: int | None = None) -> str:
        step = number if number is not None else len(self.results) + 1
        return f"step {step} of {len(self.steps)}: the instance was lost ({why})"
