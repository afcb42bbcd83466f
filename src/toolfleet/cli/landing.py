"""``toolfleet map --apply``: items' changes land through the merge queue as they come;
those that conflict or break the check once merged are redone on the new tip."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from toolfleet.client.applier import Applier
from toolfleet.client.changes import ApplyResult, ChangeBook
from toolfleet.client.items import MapItem, MapOutcome
from toolfleet.client.journal import Journal
from toolfleet.client.mergequeue import MergeQueue
from toolfleet.client.verify import CheckSpec
from toolfleet.errors import UnknownChange
from toolfleet.gitops import git

__all__ = ["Landing"]


class Landing:
    """Lands a map's changes on the branch checked out here (``--apply``): an ok item's
    change goes to the merge queue as it completes (checked once merged, with ``check``);
    :meth:`redo_items` gives the items whose change must be made again on the new tip."""

    def __init__(self, book: ChangeBook, items: list[MapItem], check: CheckSpec | None) -> None:
        self.book = book
        self.items = {item.key: item for item in items}
        self.check = check
        #: change id -> the key of the item that made it
        self.made_by: dict[str, str] = {}
        self.checks: dict[str, str] = {}
        timeout = check.timeout if check is not None else 600.0
        self.queue = MergeQueue(book, ".", checks=self.checks, check_timeout=timeout)
        self.applier = Applier(book, merge_queue=self.queue)
        self.result = ApplyResult()
        #: changes made again on a newer tip (conflicting or broken once merged)
        self.redone: list[str] = []

    def take(self, outcome: MapOutcome) -> None:
        """Queue an ok item's change (in the applier's thread: the map goes on)."""
        changes = outcome.changes
        if outcome.ok and changes is not None and changes.commit is not None:
            self._queue(changes.id, outcome.key)

    def _queue(self, change: str, key: str) -> None:
        self.made_by[change] = key
        item = self.items.get(key)
        if self.check is not None and item is not None:
            self.checks[change] = self.check.command_for(item)
        self.applier.add(change)

    def resume(self, journal: Path, err: Console) -> None:
        """Queue the changes of items a stopped run recorded ok but did not land (an item
        recorded twice: its last record's)."""
        last: dict[str, str] = {}
        for record in Journal(journal).read():
            change = (record.get("changes") or {}).get("id")
            if record.get("ok") and isinstance(change, str):
                last[record["key"]] = change
        waiting = []
        for key, change in last.items():
            try:
                state = self.book.get(change).state
            except UnknownChange:
                continue
            if state in ("pending", "ready"):
                waiting.append((change, key))
        if waiting:
            err.print(f"{len(waiting)} change(s) recorded in {journal} not applied yet: applying")
        for change, key in waiting:
            self._queue(change, key)

    def settle(self) -> ApplyResult:
        """Wait for the changes queued; what the queue did with them (all rounds)."""
        done = self.applier.close()
        self.result.add(done)
        return done

    def redo_items(self, done: ApplyResult) -> list[MapItem]:
        """The items whose change conflicted or broke the check once merged in ``done``,
        to run again from the target's tip (their old changes leave the failures: the
        new ones' fate counts); a fresh applier takes the new changes."""
        tip = git("rev-parse", "HEAD", cwd=".").strip()  # the branch the changes land on
        keys = []
        for change in done.redo:
            if change in self.made_by:
                keys.append(self.made_by[change])
                self.result.conflicts.pop(change, None)
                self.result.broken.pop(change, None)
                self.redone.append(change)
        self.applier = Applier(self.book, merge_queue=self.queue)
        return [dataclasses.replace(self.items[k], base=tip) for k in keys if k in self.items]

    def report(self, err: Console) -> None:
        """What landed, what was redone, what is left for a person."""
        done = self.result
        if not (done.applied or done.already or done.redo or done.refused or self.redone):
            return
        parts = [f"{len(done.applied)} change(s) applied"]
        if done.already:
            parts.append(f"{len(done.already)} there already")
        if self.redone:
            parts.append(f"{len(self.redone)} redone on a newer tip")
        parts.append(f"{len(done.conflicts)} conflict(s), {len(done.broken)} broken once merged")
        err.print(", ".join(parts))
        for change, files in done.conflicts.items():
            err.print(f"[red]conflict: {change}: {', '.join(files)} (not applied)[/]")
        for change, output in done.broken.items():
            last = (output.strip().splitlines() or [""])[-1]
            err.print(f"[red]broken once merged: {change}: {last} (not applied)[/]")
