"""When a bulk run's message is due: per prompt from a chunk's progress, and lost ones
sent again (fake carriers, a fake clock)."""

from __future__ import annotations

from dataclasses import dataclass, field

from toolfleet.client.attempts import Slot
from toolfleet.client.inflight import InFlight
from toolfleet.client.items import MapItem
from toolfleet.errors import RedisUnavailable


@dataclass
class Lost:
    """A LostWatch as the run sees it: where the broker holds the message."""

    place: str = "queued"
    resent: int = 0
    looks: int = 0
    away: bool = False

    def look(self, ready: object) -> str:
        if self.away:
            raise RedisUnavailable("Redis is away")
        self.looks += 1
        if self.place == "nowhere":
            self.resent += 1
            self.place = "queued"
        return self.place


@dataclass
class Carrier:
    """A chunk as the run sees it: its progress and where the broker holds it."""

    id: str
    items: list[object]
    done: int | None = None
    lost: Lost = field(default_factory=Lost)

    def progress(self) -> int | None:
        return self.done

    def ready(self) -> bool:
        return False


@dataclass
class Item:
    chunk: Carrier
    id: str = "c:0"


def _slots(carrier: Carrier, wait: float, sent: float = 0.0) -> list[Slot]:
    n = len(carrier.items)
    return [
        Slot(MapItem(str(i), "x"), Item(carrier, f"c:{i}"), 1, sent, sent, sent + wait * n)  # type: ignore[arg-type]
        for i in range(n)
    ]


def _flying(chunk: Carrier, wait: float) -> tuple[InFlight, list[Slot]]:
    """``chunk``'s items in flight, looked for every 10 s."""
    flight = InFlight(every=10)
    slots = _slots(chunk, wait=wait)
    for slot in slots:
        flight.add(slot)
    return flight, slots


def test_a_chunk_no_worker_started_may_wait_its_prompts_times_in_the_queue() -> None:
    chunk = Carrier("c", [0] * 4)
    flight, slots = _flying(chunk, wait=30)
    assert len(flight) == 1
    assert not flight.overdue(slots[0], 119)
    assert flight.overdue(slots[0], 121)


def test_a_started_chunk_is_given_up_one_result_timeout_after_its_last_progress() -> None:
    chunk = Carrier("c", [0] * 10)
    flight, slots = _flying(chunk, wait=30)
    chunk.done = 0
    flight.look(10)  # a worker started it
    chunk.done = 3
    flight.look(20)  # three prompts done by now
    assert not flight.overdue(slots[9], 49)
    # nothing since: lost after one prompt's time, not the 10 x 30 s of the whole chunk
    assert flight.overdue(slots[9], 51)


def test_progress_seen_at_the_last_look_before_giving_up_keeps_it() -> None:
    chunk = Carrier("c", [0] * 10)
    flight, slots = _flying(chunk, wait=30)
    chunk.done = 0
    flight.look(10)
    chunk.done = 5  # the worker moved on between two looks
    assert not flight.overdue(slots[0], 45)  # looked again before giving up
    assert flight.overdue(slots[0], 76)


def test_a_lost_message_is_sent_again_and_its_time_starts_over() -> None:
    chunk = Carrier("c", [0] * 2, lost=Lost(place="nowhere"))
    flight, slots = _flying(chunk, wait=30)
    flight.look(5)  # not yet its turn
    assert chunk.lost.looks == 0
    flight.look(10)
    assert chunk.lost.resent == 1
    assert not flight.overdue(slots[0], 65)  # 10 + 2 x 30
    assert flight.overdue(slots[0], 71)


def test_redis_away_at_a_look_is_no_error_and_it_looks_again_later() -> None:
    chunk = Carrier("c", [0], lost=Lost(away=True))
    flight = InFlight(every=10)
    (slot,) = _slots(chunk, wait=30)
    flight.add(slot)
    flight.look(10)
    chunk.lost.away = False
    flight.look(15)
    assert chunk.lost.looks == 0
    flight.look(20)
    assert chunk.lost.looks == 1


def test_the_last_item_with_an_outcome_removes_its_message() -> None:
    chunk = Carrier("c", [0] * 2)
    flight, slots = _flying(chunk, wait=30)
    flight.remove(slots[0])
    assert len(flight) == 1
    flight.remove(slots[1])
    assert len(flight) == 0
    assert flight.overdue(slots[0], 61)  # unknown now: its own deadline
