"""The applier merges changes in order, in its own thread, and reports every one."""

from __future__ import annotations

import threading

from toolfleet.client.applier import Applier
from toolfleet.client.changes import ApplyResult
from toolfleet.errors import DirtyTarget


class Book:
    """A ChangeBook stand-in: 'c*' apply, 'x*' conflict, 'dirty' raises."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def apply(self, changes, repo=".", onto=None):  # type: ignore[no-untyped-def]
        (change,) = changes
        self.seen.append((change, threading.current_thread().name))
        if change == "dirty":
            raise DirtyTarget("uncommitted changes")
        result = ApplyResult()
        if change.startswith("x"):
            result.conflicts[change] = ["a.py"]
        else:
            result.applied.append(change)
        return result


def test_changes_are_applied_in_order_in_a_thread_and_each_reported() -> None:
    book = Book()
    with Applier(book, repo="/somewhere") as applier:  # type: ignore[arg-type]
        for change in ["c1", "x2", "dirty", "c3"]:
            applier.add(change)
    result = applier.result
    assert [c for c, _ in book.seen] == ["c1", "x2", "dirty", "c3"]
    assert {thread for _, thread in book.seen} == {"toolfleet-apply"}
    assert result.applied == ["c1", "c3"]
    assert result.conflicts == {"x2": ["a.py"], "dirty": ["DirtyTarget: uncommitted changes"]}
    assert applier.close() is result  # closing again changes nothing
