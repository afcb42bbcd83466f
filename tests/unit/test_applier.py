"""The applier merges changes in order, in its own thread, and reports every one."""

from __future__ import annotations

import threading

from toolfleet.client.applier import Applier
from toolfleet.client.changes import ApplyResult
from toolfleet.errors import DirtyTarget


class Book:
    """A ChangeBook and MergeQueue stand-in: 'c*' apply, 'x*' conflict, 'dirty' raises."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.batches: list[list[str]] = []
        #: set to hold the first apply until the test has queued more
        self.hold: threading.Event | None = None
        self.entered = threading.Event()

    def land(self, changes):  # type: ignore[no-untyped-def]
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(10)
            self.hold = None
        self.batches.append(list(changes))
        if "dirty" in changes:  # like DirtyTarget: refused before anything is merged
            raise DirtyTarget("uncommitted changes")
        result = ApplyResult()
        for change in changes:
            self.seen.append((change, threading.current_thread().name))
            if change.startswith("x"):
                result.conflicts[change] = ["a.py"]
            else:
                result.applied.append(change)
        return result


def test_changes_are_applied_in_order_in_a_thread_and_each_reported() -> None:
    book = Book()
    with Applier(book, repo="/somewhere", merge_queue=book) as applier:  # type: ignore[arg-type]
        for change in ["c1", "x2", "dirty", "c3"]:
            applier.add(change)
    result = applier.result
    assert [c for c, _ in book.seen] == ["c1", "x2", "c3"]
    assert {thread for _, thread in book.seen} == {"toolfleet-apply"}
    assert result.applied == ["c1", "c3"]
    assert result.conflicts == {"x2": ["a.py"], "dirty": ["DirtyTarget: uncommitted changes"]}
    assert applier.close() is result  # closing again changes nothing


def test_changes_that_come_in_during_a_merge_are_applied_in_one_batch() -> None:
    book = Book()
    book.hold = threading.Event()
    with Applier(book, merge_queue=book) as applier:  # type: ignore[arg-type]
        applier.add("c1")
        assert book.entered.wait(10)  # the thread has taken c1 and waits in apply
        for change in ["c2", "x3", "c4"]:
            applier.add(change)
        book.hold.set()
    assert book.batches == [["c1"], ["c2", "x3", "c4"]]
    assert applier.result.applied == ["c1", "c2", "c4"]
    assert applier.result.conflicts == {"x3": ["a.py"]}


def test_an_error_in_a_batch_is_found_change_by_change() -> None:
    book = Book()
    book.hold = threading.Event()
    with Applier(book, merge_queue=book) as applier:  # type: ignore[arg-type]
        applier.add("c1")
        assert book.entered.wait(10)
        for change in ["c2", "dirty", "c3"]:
            applier.add(change)
        book.hold.set()
    assert book.batches == [["c1"], ["c2", "dirty", "c3"], ["c2"], ["dirty"], ["c3"]]
    assert applier.result.applied == ["c1", "c2", "c3"]
    assert applier.result.conflicts == {"dirty": ["DirtyTarget: uncommitted changes"]}


def test_changes_that_come_in_soon_after_a_merge_wait_for_the_next_batch() -> None:
    book = Book()
    with Applier(book, every=30.0, merge_queue=book) as applier:  # type: ignore[arg-type]
        applier.add("c1")
        assert book.entered.wait(10)  # the first batch goes at once
        applier.add("c2")
        applier.add("c3")
    # the next one waits out the period (cut short by close): both in it
    assert book.batches == [["c1"], ["c2", "c3"]]
    assert applier.result.applied == ["c1", "c2", "c3"]
