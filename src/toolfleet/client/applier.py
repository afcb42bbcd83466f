"""Applies items' changes as they complete, in a thread of its own, so a map goes on."""

from __future__ import annotations

import os
import queue
import threading
import time
from types import TracebackType
from typing import Protocol

from toolfleet.client.changes import ApplyResult, ChangeBook
from toolfleet.client.mergequeue import MergeQueue
from toolfleet.errors import ToolfleetError

__all__ = ["Applier", "Lander"]


class Lander(Protocol):
    """What lands changes on their target (a :class:`MergeQueue`)."""

    def land(self, changes: list[str]) -> ApplyResult: ...


class Applier:
    """Merges changes into a checkout one at a time, in the order given, while the caller
    goes on (a map keeps its instances busy instead of waiting for each merge).

    :meth:`close` waits for the merges asked for and returns what they did; a change
    that could not be applied (a conflict, or an error such as DirtyTarget) is listed
    in ``conflicts`` with the reason.

    It merges at most once every ``every`` seconds, each time all the changes that came
    in since: a batch costs a look at the target and one move of its checkout, so a
    fast rollout's changes go in several at a time rather than one by one.
    """

    def __init__(
        self,
        book: ChangeBook,
        repo: str | os.PathLike[str] = ".",
        onto: str | None = None,
        every: float = 0.5,
        merge_queue: Lander | None = None,
    ) -> None:
        self.book = book
        #: what lands the changes (with a check: one at a time, checked once merged)
        self.merge_queue: Lander = merge_queue or MergeQueue(book, repo, onto)
        self.every = every
        self.result = ApplyResult()
        self._closing = threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="toolfleet-apply", daemon=True)
        self._thread.start()

    def add(self, change: str) -> None:
        """Apply ``change`` after those added before it."""
        self._queue.put(change)

    def close(self) -> ApplyResult:
        """Wait for every change added; what was applied and what conflicted."""
        if self._thread.is_alive():
            self._closing.set()  # no more waiting for a batch to fill
            self._queue.put(None)
            self._thread.join()
        return self.result

    def _run(self) -> None:
        ended = False
        last = -self.every
        while not ended:
            # what has come in since the last merge goes in one batch: the target's
            # branch and cleanliness are looked at once a batch, not once a change
            batch = [self._queue.get()]
            self._closing.wait(last + self.every - time.monotonic())
            last = time.monotonic()
            while batch[-1] is not None and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            ended = batch[-1] is None
            changes = [c for c in batch if c is not None]
            if changes:
                self._apply(changes)

    def _apply(self, changes: list[str]) -> None:
        try:
            done = self.merge_queue.land(changes)
        except Exception as exc:  # never lost: reported with the change
            if len(changes) > 1:  # find which change it was: one at a time
                for change in changes:
                    self._apply([change])
                return
            why = exc.message if isinstance(exc, ToolfleetError) else str(exc)
            self.result.conflicts[changes[0]] = [f"{type(exc).__name__}: {why}"]
            return
        self.result.add(done)

    def __enter__(self) -> Applier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
