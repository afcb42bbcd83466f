"""The bulk-run engine: many prompts over the fleet, bounded in flight, retried, journaled."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, cast

from toolfleet.client.attempts import Slot, retryable, settle_outcome
from toolfleet.client.budgets import budget_left
from toolfleet.client.inflight import InFlight
from toolfleet.client.items import MapItem, MapOutcome
from toolfleet.client.journal import Journal
from toolfleet.client.progress import RunProgress
from toolfleet.client.protocols import Submitter
from toolfleet.client.results import ready_ids, revoke
from toolfleet.client.sending import Sender, Waiting
from toolfleet.client.verify import CheckSpec
from toolfleet.errors import ProviderQuotaExhausted, ResultTimeout, ToolfleetError
from toolfleet.models import PromptResult, Usage

__all__ = ["MapRun", "run_map"]

log = logging.getLogger(__name__)


# ---- the run ------------------------------------------------------------------------


class MapRun:
    """A bulk run in progress: iterate it for a :class:`MapOutcome` per item as each ends.

    Made by :func:`run_map`. Counters: ``total`` items given, ``skipped`` (keys already
    ok in the journal), ``retried`` (resubmissions), ``resent`` (messages the broker lost,
    sent again under their ids), and after a stop ``cancelled``
    (keys never submitted) and ``abandoned`` (keys whose prompt may still run unrecorded).
    """

    def __init__(
        self,
        fleet: Submitter,
        items: Iterable[MapItem | str],
        *,
        profile: str | None = None,
        in_flight: int = 8,
        retries: int = 0,
        journal: Journal | str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        result_timeout: float | None = None,
        poll: float = 0.005,
        budget: float | None = None,
        chunk: int | None = None,
        item_budget: float | None = None,
        check: CheckSpec | None = None,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        if chunk is not None and chunk < 1:
            raise ValueError("chunk must be at least 1")
        if retries < 0:
            raise ValueError("retries must be at least 0")
        if budget is not None and budget <= 0:
            raise ValueError("budget must be more than 0")
        if item_budget is not None and item_budget <= 0:
            raise ValueError("item_budget must be more than 0")
        given = [
            it if isinstance(it, MapItem) else MapItem(key=str(i), text=it)
            for i, it in enumerate(items)
        ]
        seen: set[str] = set()
        for it in given:
            if it.key in seen:
                raise ValueError(f"duplicate item key {it.key!r}")
            seen.add(it.key)
            if it.profile is None and profile is None:
                raise ValueError(f"item {it.key!r} has no profile and no default profile is set")
        self.fleet = fleet
        self.profile = profile
        self.check = check  # after each item's steps, with repair turns (worktree profiles)
        self.in_flight = in_flight
        #: prompts per message (None: each profile's ``chunk``); items with steps go alone,
        #: and a run with a budget sends one prompt a message unless told otherwise, so
        #: that it stops within a prompt of its budget
        self.chunk = chunk if hasattr(fleet, "submit_many") else 1
        if self.chunk is None and budget is not None:
            self.chunk = 1
        self.retries = retries
        self.timeout = timeout
        self.result_timeout = result_timeout
        self.poll = poll
        self._owns_journal = not (journal is None or isinstance(journal, Journal))
        self.journal = (
            journal if journal is None or isinstance(journal, Journal) else Journal(journal)
        )
        done: dict[str, str | None] = {}
        if self.journal is not None:
            done = self.journal.done()
            self.journal.open()
            for session in self.journal.unsettled():  # a stopped run's: never recorded now
                cast(Any, fleet).changes.abandon(session)
        self.total = len(given)
        self.skipped = [it.key for it in given if it.key in done]
        #: skipped keys whose recorded prompt text differs from this run's
        self.changed = [
            it.key for it in given if it.key in done and done[it.key] not in (None, it.digest)
        ]
        self.retried = 0
        #: spend no more than this (the tools' usage reports' cost): once the items'
        #: cost reaches it nothing new is sent (``budget_reached``; the rest in cancelled)
        self.budget = budget
        self.budget_reached = False
        #: what one item's model calls may cost, kept by the model gateway during the item
        self.item_budget = item_budget
        #: the provider's words when an upstream's quota ran out: what was not run is in
        #: ``cancelled``, unrecorded in the journal (a re-run with it runs them)
        self.quota_exhausted: str | None = None
        #: what the items reported spending so far
        self.usage: Usage | None = None
        self.cancelled: list[str] = []
        self.abandoned: list[str] = []
        self.stopped = False
        self.started = time.monotonic()
        self.finished: float | None = None
        self._pending: deque[Waiting] = deque((it, 0, None) for it in given if it.key not in done)
        self._outstanding: dict[str, Slot] = {}
        #: messages in flight (a prompt's, or a chunk's): when each is due, lost ones
        self._inflight = InFlight()
        self._ready: deque[MapOutcome] = deque()
        self._recorded: set[str] = set()
        self._stop_requested = False
        #: progress in Redis for the dashboard (at most once a second)
        self._progress = RunProgress.of(fleet, profile)
        #: what sends the items (and runs the multi-step ones)
        self._sender = Sender(self, self._track, self._refused)
        if not self._pending:
            self._finish()

    # -- control

    def stop(self) -> None:
        """Ask the run to stop: nothing new is submitted, and iterating on yields the
        outcomes of the prompts already sent (at most ``in_flight``), then ends.

        Prompts already sent are waited for rather than revoked: a revoke cannot tell a
        queued prompt from a running one (with ``task_track_started`` off both are
        PENDING, and Celery's workers mark either REVOKED), so a prompt that then runs
        would go unrecorded and run again on the next run. Only sets a flag, so a
        signal handler may call it.
        """
        self._stop_requested = True

    def close(self, wait: bool = True) -> list[MapOutcome]:
        """Stop and return the outcomes not yet taken (all of them journaled).

        With ``wait`` it waits for the prompts already sent (each until its result
        deadline); without, it revokes them (best effort), records those already
        finished and lists the rest in ``abandoned``: they may still run, unrecorded.
        """
        self.stop()
        if not wait and self.finished is None:
            if not self.stopped:
                self._stop_now()
            self._sweep()  # record what has finished, then give up on the rest
            for slot in self._outstanding.values():
                revoke(slot.handle)
            self._abandon()
        return list(self)

    def __enter__(self) -> MapRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()  # a second Ctrl-C while it waits ends the wait

    # -- iteration

    def __iter__(self) -> MapRun:
        return self

    def __next__(self) -> MapOutcome:
        try:
            while True:
                if self._ready:
                    return self._ready.popleft()
                if self.finished is not None:
                    raise StopIteration
                if not self._outstanding and (self.stopped or not self._pending):
                    self._finish()
                    continue
                self._step()
        except KeyboardInterrupt:
            self._stop_requested = True  # state is consistent; a later call drains
            raise

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (until it finished)."""
        return (self.finished or time.monotonic()) - self.started

    @property
    def stop_reason(self) -> str:
        """Why items were not run: budget reached, quota exhausted, or stopped."""
        quota = "quota exhausted" if self.quota_exhausted is not None else None
        return quota or ("budget reached" if self.budget_reached else "stopped")

    def item_budget_left(self) -> float | None:
        """What the next item's model calls may cost (None: no limit)."""
        return budget_left(self.item_budget, self.budget, self.usage)

    @property
    def stop_requested(self) -> bool:
        """True once :meth:`stop` was called (or a KeyboardInterrupt hit the iteration)."""
        return self._stop_requested

    @property
    def resent(self) -> int:
        """Messages sent again because the broker had lost them (a Redis restart)."""
        return self._inflight.resent

    @property
    def outstanding(self) -> int:
        """Prompts submitted and not finished."""
        return len(self._outstanding)

    def _step(self) -> None:
        if self._progress is not None:
            self._progress.tick(self)
        if self._stop_requested and not self.stopped:
            self._stop_now()
        if not self.stopped:
            self._fill()
        if not self._sweep() and not self._ready:
            time.sleep(self.poll)

    def _stop_now(self) -> None:
        self.stopped = True
        self.cancelled.extend(item.key for item, _, _ in self._pending)
        self._pending.clear()

    def _abandon(self) -> None:
        for slot in self._outstanding.values():
            self.abandoned.append(slot.item.key)
        self._outstanding.clear()
        self._inflight.clear()

    def _track(self, slot: Slot) -> None:
        self._outstanding[slot.handle.id] = slot
        self._inflight.add(slot)

    def _untrack(self, pid: str) -> None:
        self._inflight.remove(self._outstanding.pop(pid))

    def _finish(self) -> None:
        if self.finished is None:
            self.finished = time.monotonic()
            if self._progress is not None:
                self._progress.finish(self)
            if self.journal is not None and self._owns_journal:
                self.journal.close()
            self._sender.close()

    def _fill(self) -> None:
        while self._pending and len(self._inflight) < self.in_flight:
            batch = self._sender.take(self._pending, self._outstanding.values())
            if not batch:  # the next items work on files of items in flight: they wait
                return
            try:
                self._sender.send(batch)
            except BaseException:
                self._pending.extendleft(reversed(batch))
                raise

    def _refused(self, slot: Slot, error: ToolfleetError) -> None:
        """Settle an item refused before anything was sent (PromptRejected)."""
        self._settle(None, slot, error=error)

    def _sweep(self) -> bool:
        """Collect finished prompts and lost ones; True if any was. Messages the broker
        lost are sent again (see :class:`InFlight`)."""
        progressed = False
        if not self._outstanding:
            return progressed
        now = time.monotonic()
        ready = ready_ids([slot.handle for slot in self._outstanding.values()])
        for pid, slot in list(self._outstanding.items()):
            if pid in ready:
                self._collect(pid, slot)
                progressed = True
        self._inflight.look(now)
        for pid, slot in list(self._outstanding.items()):
            if pid in ready:
                continue
            if self._inflight.overdue(slot, now):
                if self.stopped:  # no retry now: it may yet run, unrecorded
                    self._untrack(pid)
                    self.abandoned.append(slot.item.key)
                else:
                    revoke(slot.handle)  # if it is only late, do not run it twice
                    lost = ResultTimeout(
                        f"no result for prompt {pid} within {now - slot.submitted:.0f} s"
                        " (its worker may have been lost)"
                    )
                    self._settle(pid, slot, error=lost)
                progressed = True
        return progressed

    def _collect(self, pid: str, slot: Slot) -> None:
        if not slot.handle.ready():  # also caches the result, so that get() returns at once
            return
        try:
            result = slot.handle.get(timeout=10.0)
        except ToolfleetError as exc:
            self._settle(pid, slot, error=exc)
        else:
            self._settle(pid, slot, result=result)

    def _settle(
        self,
        pid: str | None,
        slot: Slot,
        *,
        result: PromptResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Retry the item, or record and queue its outcome."""
        if isinstance(error, ProviderQuotaExhausted):  # not run, not failed: stop
            if pid is not None:
                self._untrack(pid)
            self.cancelled.append(slot.item.key)
            if self.quota_exhausted is None:
                self.quota_exhausted = error.message
            self._stop_requested = True
            return
        retry = error is not None and retryable(error) and slot.attempt <= self.retries
        if retry and not self.stopped:
            if pid is not None:
                self._untrack(pid)
            self._pending.appendleft((slot.item, slot.attempt, slot.first_submit))
            self.retried += 1
            return
        outcome = settle_outcome(slot, result, error)
        marker = pid or f"{slot.item.key}#{slot.attempt}"
        if self.journal is not None and marker not in self._recorded:
            self.journal.write(outcome, sha=slot.item.digest)
        self._recorded.add(marker)
        if pid is not None:
            self._untrack(pid)
        self._ready.append(outcome)
        if self._progress is not None:
            self._progress.settled(outcome.ok, self)
        self.usage = Usage.total([self.usage, outcome.usage])
        cost = self.usage.cost if self.usage is not None else 0.0
        if self.budget is not None and cost >= self.budget and not self.budget_reached:
            self.budget_reached = True
            self._stop_requested = True  # the items sent finish; nothing new goes out


def run_map(fleet: Submitter, items: Iterable[MapItem | str], **options: Any) -> MapRun:
    """Run every item over the fleet; iterate the result for outcomes as they complete.

    Options (keywords of :class:`MapRun`): ``profile``, ``in_flight`` (8), ``retries``
    (0), ``journal``, ``timeout``, ``result_timeout``, ``poll`` (0.005 s), ``budget``,
    ``chunk`` (each profile's ``chunk``), ``item_budget``, ``check`` (see Fleet.map).
    Items sharing one of their ``paths`` never run at the same time.

    - ``items``: :class:`MapItem` (unique keys), or plain strings keyed by their index.
      An item's own ``profile``/``timeout`` win over ``profile``/``timeout`` here;
      ``timeout`` is the prompt's deadline inside the tool (default: the profile's).
    - At most ``in_flight`` messages are outstanding at any time; a message carries
      ``chunk`` prompts (Fleet.submit_many) run in order on one instance: the REPLs'
      profiles chunk by 16, aider and the agents not at all (``chunk`` 1). Outcomes,
      retries and the journal stay per item: a prompt that fails in a chunk fails alone,
      and each prompt of a chunk whose worker was lost is retried on its own count.
    - An item failing with a retryable error (``ToolCrashed``, ``ToolTimeout``, a lost
      worker, ``ResultTimeout``) is resubmitted up to ``retries`` times. An answer with
      ``ok`` false (e.g. a non-zero exit status) is the outcome ``ToolError``, not retried;
      so is a ``PromptRejected`` prompt.
    - ``result_timeout`` (default: twice the prompt deadline plus 30 s) is the time one
      result may take: from when its message was sent, or, for a prompt of a chunk its
      worker has started, from the last progress the worker recorded (a chunk not yet
      started may wait its prompts' times in its queue). A result not there by then
      counts as lost: ``ResultTimeout``; the late prompt is revoked so that, if it had
      not started, it does not run as well as its retry.
    - ``budget`` (e.g. USD): once the items' reported cost reaches it nothing new is
      sent (``budget_reached``, the rest in ``cancelled``); a run with a budget sends a
      prompt a message unless ``chunk`` says otherwise. ``item_budget``: see Fleet.map.
    - ``journal`` (a path or :class:`Journal`): each outcome is appended as it comes;
      items recorded ok are skipped (``MapRun.skipped``).
    - Stopping, and messages the broker lost: see :meth:`MapRun.stop`, :meth:`MapRun.close`.
    """
    return MapRun(fleet, items, **options)
