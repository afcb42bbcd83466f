"""Items that work on the same file never run at the same time in one map: the sender
passes over an item sharing a path with one in flight, and sends the next that shares none."""

from __future__ import annotations

from collections import deque
from typing import Any

from toolfleet.client.attempts import NoHandle, Slot
from toolfleet.client.items import MapItem
from toolfleet.client.sending import Sender, Waiting


class Run:
    fleet: Any = object()
    profile = "bash"
    chunk = 4
    timeout = None
    result_timeout = None
    check = None

    def item_budget_left(self) -> float | None:
        return None


def waiting(key: str, *paths: str) -> Waiting:
    return (MapItem(key=key, text=f"edit {key}", paths=paths), 0, None)


def in_flight(*paths: str) -> Slot:
    return Slot(MapItem(key="busy", text="x", paths=paths), NoHandle(), 1, 0.0, 0.0, 1e9)


def sender() -> Sender:
    return Sender(Run(), lambda slot: None, lambda slot, error: None)


def test_an_item_sharing_a_file_with_one_in_flight_waits_and_the_next_free_one_goes() -> None:
    pending = deque([waiting("a", "a.py", "shared.py"), waiting("b", "b.py"), waiting("c", "c.py")])
    taken = sender().take(pending, [in_flight("shared.py")])
    assert [entry[0].key for entry in taken] == ["b"]
    assert [entry[0].key for entry in pending] == ["a", "c"]  # a keeps its place


def test_nothing_is_sent_while_every_waiting_item_shares_a_file_in_flight() -> None:
    pending = deque([waiting("a", "x.py"), waiting("b", "x.py", "y.py")])
    assert sender().take(pending, [in_flight("x.py")]) == []
    assert len(pending) == 2


def test_items_without_files_in_common_go_in_order_as_before() -> None:
    pending = deque([waiting("a", "a.py"), waiting("b", "b.py")])
    taken = sender().take(pending, [in_flight("z.py")])
    assert [entry[0].key for entry in taken] == ["a", "b"]  # one chunk, in order
