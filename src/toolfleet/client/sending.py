"""How a bulk run sends its items: a message each, or chunks of plain prompts; deadlines."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

from toolfleet.client.attempts import NoHandle, Slot, profile_chunk, profile_deadline
from toolfleet.client.items import MapItem
from toolfleet.client.journal import Journal
from toolfleet.client.protocols import Handle, Submitter
from toolfleet.client.stepped import SessionOpener, StepsHandle, StepThreads
from toolfleet.client.verify import CheckSpec
from toolfleet.errors import ConfigError, ToolfleetError

__all__ = ["RunOptions", "Sender", "Waiting"]

#: an item waiting to be sent: the item, its attempts so far, when it was first sent
Waiting = tuple[MapItem, int, float | None]


class RunOptions(Protocol):
    """What sending reads of a run (a ``MapRun``)."""

    fleet: Submitter
    profile: str | None
    chunk: int | None
    timeout: float | None
    result_timeout: float | None
    check: CheckSpec | None
    journal: Journal | None

    def item_budget_left(self) -> float | None: ...


class Sender:
    """Sends a run's items over its fleet, a message at a time: :meth:`take` picks the
    next message's items, :meth:`send` sends them. Each item sent goes to ``track`` (its
    :class:`Slot`, with the deadline of its result); an item refused before anything
    was sent (PromptRejected) goes to ``refuse``, with the error."""

    def __init__(
        self,
        run: RunOptions,
        track: Callable[[Slot], None],
        refuse: Callable[[Slot, ToolfleetError], None],
    ) -> None:
        self.run = run
        self._track = track
        self._refuse = refuse
        self._deadlines: dict[str, float] = {}
        self._chunks: dict[str, int] = {}
        #: the threads multi-step items run in (made with the first such item)
        self._threads: StepThreads | None = None

    def close(self) -> None:
        """End the threads multi-step items ran in."""
        if self._threads is not None:
            self._threads.close()

    def take(self, pending: deque[Waiting], sent: Iterable[Slot] = ()) -> list[Waiting]:
        """The next message's items: one, or up to a chunk of plain prompts for the same
        profile and deadline, in order. An item sharing a file (``paths``) with an item
        in flight (``sent``) waits: the first that shares none goes (none: [])."""
        busy = {path for slot in sent for path in slot.item.paths}
        if busy and any(busy.intersection(entry[0].paths) for entry in pending):
            free = next((e for e in pending if not busy.intersection(e[0].paths)), None)
            if free is None:
                return []
            pending.remove(free)
            return [free]
        batch = [pending.popleft()]
        item = batch[0][0]
        profile = item.profile or self.run.profile
        assert profile is not None
        size = 1 if item.steps else self._chunk_for(profile)
        while pending and len(batch) < size:
            other = pending[0][0]
            if other.steps or (other.profile or self.run.profile) != profile:
                break
            if other.timeout != item.timeout:
                break
            batch.append(pending.popleft())
        return batch

    def send(self, batch: list[Waiting]) -> None:
        """Send ``batch`` (from :meth:`take`) as one message."""
        if len(batch) == 1:
            self._submit(*batch[0])
        else:
            self._submit_chunk(batch)

    def _deadline_for(self, profile: str, item: MapItem) -> float:
        """Seconds to wait for one result before counting the prompt as lost."""
        if self.run.result_timeout is not None:
            return self.run.result_timeout
        prompt = item.timeout if item.timeout is not None else self.run.timeout
        if prompt is None:
            if profile not in self._deadlines:
                self._deadlines[profile] = profile_deadline(self.run.fleet, profile)
            prompt = self._deadlines[profile]
        return 2 * prompt + 30.0

    def _chunk_for(self, profile: str) -> int:
        """Prompts per message for ``profile``: the run's ``chunk``, else the profile's."""
        if self.run.chunk is not None:
            return self.run.chunk
        if profile not in self._chunks:
            self._chunks[profile] = profile_chunk(self.run.fleet, profile)
        return self._chunks[profile]

    def _submit_chunk(self, batch: list[Waiting]) -> None:
        """Send ``batch`` (plain prompts, one profile) as one message; a prompt refused
        before sending (PromptRejected) goes to ``refuse`` alone."""
        item = batch[0][0]
        profile = item.profile or self.run.profile
        assert profile is not None
        timeout = item.timeout if item.timeout is not None else self.run.timeout
        now = time.monotonic()
        validate = getattr(self.run.fleet, "validate", None)
        sendable: list[Waiting] = []
        for entry in batch:
            try:
                if validate is not None:
                    validate(entry[0].text, profile)
            except ToolfleetError as exc:
                refused = Slot(entry[0], NoHandle(), entry[1] + 1, entry[2] or now, now, now)
                self._refuse(refused, exc)
            else:
                sendable.append(entry)
        if not sendable:
            return
        texts = [entry[0].text for entry in sendable]
        handles = cast(Any, self.run.fleet).submit_many(texts, profile, timeout=timeout)
        # the chunk's prompts run one after another: the last waits for all before it
        deadline = now + self._deadline_for(profile, item) * len(sendable)
        for (it, attempts, first), handle in zip(sendable, handles, strict=True):
            self._track(
                Slot(it, handle, attempts + 1, now if first is None else first, now, deadline)
            )

    def _submit(self, item: MapItem, attempts: int, first: float | None) -> None:
        profile = item.profile or self.run.profile
        assert profile is not None
        timeout = item.timeout if item.timeout is not None else self.run.timeout
        now = time.monotonic()
        slot_first = now if first is None else first
        wait = self._deadline_for(profile, item)
        handle: Handle
        budget = self.run.item_budget_left()
        try:
            if item.steps:
                handle = self._start_steps(item, profile, timeout, wait, budget)
            elif budget is not None:
                handle = self.run.fleet.submit(item.text, profile, timeout=timeout, budget=budget)
            else:
                handle = self.run.fleet.submit(item.text, profile, timeout=timeout)
        except ToolfleetError as exc:  # refused before anything was sent (PromptRejected)
            slot = Slot(item, NoHandle(), attempts + 1, slot_first, now, now)
            self._refuse(slot, exc)
            return
        # a multi-step item waits for its lease, then for each of its steps
        deadline = now + wait * (len(item.steps) + 1 if item.steps else 1)
        self._track(Slot(item, handle, attempts + 1, slot_first, now, deadline))

    def _start_steps(
        self, item: MapItem, profile: str, timeout: float | None, wait: float, budget: float | None
    ) -> StepsHandle:
        if not hasattr(self.run.fleet, "session"):
            raise ConfigError("multi-step items need a fleet that opens sessions (a Fleet)")
        validate = getattr(self.run.fleet, "validate", None)
        if validate is not None:  # bad input is refused before holding an instance
            for text in item.steps:
                validate(text, profile)
        opener = cast(SessionOpener, self.run.fleet)
        threads = self._threads
        if threads is None:
            threads = self._threads = StepThreads(getattr(self.run.fleet, "release_thread", None))
        changes = None
        uses_worktree = getattr(self.run.fleet, "uses_worktree", None)
        if uses_worktree is not None and uses_worktree(profile):
            book = cast(Any, self.run.fleet).changes
            changes = book.settle
        runs_once = getattr(self.run.fleet, "runs_once", None)
        return StepsHandle(
            opener,
            item.steps,
            profile,
            timeout=timeout,
            step_wait=wait,
            lease_wait=wait,
            threads=threads,
            changes=changes,
            budget=budget,
            check=self.run.check,
            item=item,
            at_most_once=runs_once is not None and runs_once(profile),
            journal=self.run.journal,
        )
