"""The delivery guard's decision for each delivery of a prompt, and its claims, in memory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from toolfleet.broker import away
from toolfleet.errors import ToolError, WorkerLost
from toolfleet.keys import CLAIM_PREFIX, health_key
from toolfleet.workers.guard import CLAIM_TRIES, Claim, Decision, DeliveryGuard

ME = Claim("me@h", 100)
OTHER = Claim("other@h", 200)
ANSWER = {"output": "slept 6", "ok": True, "prompt_id": "p1"}


class DictRedis:
    """The two commands the guard uses, in memory, each one logged."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.log: list[tuple[str, str]] = []
        self.ttl_ms: dict[str, int] = {}

    def get(self, name: str) -> str | None:
        self.log.append(("get", name))
        return self.data.get(name)

    def set(self, name: str, value: str, *, nx: bool = False, px: int | None = None) -> bool:
        self.log.append(("set", name))
        assert px is not None and px >= 1000  # every claim expires
        if nx and name in self.data:
            return False
        self.data[name] = value
        self.ttl_ms[name] = px
        return True


class VanishingClaims(DictRedis):
    """A claim that is there at each SET NX and gone at each GET, ``times`` times."""

    def __init__(self, holder: Claim, times: int) -> None:
        super().__init__()
        self.holder = json.dumps({"worker": holder.worker, "worker_pid": holder.worker_pid})
        self.times = times

    def set(self, name: str, value: str, *, nx: bool = False, px: int | None = None) -> bool:
        if nx and self.times > 0:
            self.data[name] = self.holder  # there at the SET NX...
        return super().set(name, value, nx=nx, px=px)

    def get(self, name: str) -> str | None:
        if name.startswith(CLAIM_PREFIX) and self.times > 0:
            self.times -= 1
            self.data.pop(name, None)  # ...expired by the GET
        return super().get(name)


@dataclass
class Request:
    """The parts of a Celery task request the guard reads."""

    id: str = "p1"
    delivery_info: dict[str, Any] | None = field(default_factory=dict)


REDELIVERED = Request(delivery_info={"redelivered": True})


class FirstRun:
    """The first execution's stored result: ready from the ``ready_at``-th look (1-based);
    ``on_look`` runs at each look."""

    def __init__(self, result: Any = None, ready_at: int | None = None, on_look=None) -> None:
        self.result = result
        self.ready_at = ready_at
        self.on_look = on_look
        self.looks = 0

    def ready(self) -> bool:
        self.looks += 1
        if self.on_look is not None:
            self.on_look(self.looks)
        return self.ready_at is not None and self.looks >= self.ready_at


def results_of(first: FirstRun):
    def results(prompt_id: str) -> FirstRun:
        assert prompt_id == "p1"
        return first

    return results


def no_results(prompt_id: str) -> FirstRun:
    raise AssertionError("a first delivery must not look for a first run's result")


def make_guard(client: DictRedis | None = None) -> tuple[DeliveryGuard, DictRedis]:
    client = client if client is not None else DictRedis()
    return DeliveryGuard(client, ME, ttl=60, visibility_timeout=10), client


def claim_by(client: DictRedis, claim: Claim) -> None:
    client.data[CLAIM_PREFIX + "p1"] = json.dumps(
        {"worker": claim.worker, "worker_pid": claim.worker_pid}
    )


def alive(client: DictRedis, claim: Claim, pid: int | None = None) -> None:
    """Publish ``claim``'s worker's health record (of process ``pid``, if given)."""
    pid = claim.worker_pid if pid is None else pid
    client.data[health_key(claim.worker)] = json.dumps({"worker": claim.worker, "worker_pid": pid})


def held_by(guard: DeliveryGuard) -> Claim | None:
    return guard.holder("p1")


# ---- first delivery ----
@pytest.mark.parametrize("delivery_info", [{}, None, {"redelivered": False}])
def test_a_short_first_delivery_runs_without_a_redis_command(delivery_info) -> None:
    guard, client = make_guard()
    request = Request(delivery_info=delivery_info)
    assert guard.admit(request, no_results, longest=4.9, at_most_once=False) == Decision("run")
    assert client.log == []


def test_a_first_delivery_that_may_outlive_the_visibility_timeout_claims_it() -> None:
    guard, _ = make_guard()
    assert guard.admit(Request(), no_results, longest=5, at_most_once=False).kind == "run"
    assert held_by(guard) == ME


def test_an_at_most_once_first_delivery_claims_it_however_short() -> None:
    guard, _ = make_guard()
    assert guard.admit(Request(), no_results, longest=1, at_most_once=True).kind == "run"
    assert held_by(guard) == ME


class Restarting(DictRedis):
    """Redis restarting: the first ``refused`` commands are refused; the one after them
    is carried out but its reply is lost."""

    def __init__(self, refused: int) -> None:
        super().__init__()
        self.refused = refused
        self.reply_lost = True

    def set(self, name: str, value: str, *, nx: bool = False, px: int | None = None) -> bool:
        if self.refused:
            self.refused -= 1
            raise redis.ConnectionError("Connection refused")
        done = super().set(name, value, nx=nx, px=px)
        if self.reply_lost:
            self.reply_lost = False
            raise redis.ConnectionError("Connection closed by server.")
        return done


def test_a_first_delivery_rides_out_redis_restarting_and_runs_once_claimed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(away.time, "sleep", lambda s: None)
    guard, client = make_guard(Restarting(refused=3))
    decision = away.ride_out(
        lambda: guard.admit(Request(), no_results, longest=1, at_most_once=True), "admitting"
    )
    assert decision == Decision("run")  # not WorkerLost: the lost reply's claim is ours
    assert held_by(guard) == ME
    assert [c for c, _ in client.log].count("set") == 2  # the carried-out one, then NX


def test_redis_away_longer_than_it_is_ridden_out_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(away, "RIDE_OUT_FOR", 0.0)
    guard, _ = make_guard(Restarting(refused=1))
    with pytest.raises(redis.ConnectionError):
        away.ride_out(lambda: guard.admit(Request(), no_results, longest=1, at_most_once=True), "x")


def test_a_first_delivery_leaves_another_workers_claim_alone() -> None:
    guard, client = make_guard()
    claim_by(client, OTHER)
    assert guard.admit(Request(), no_results, longest=5, at_most_once=True).kind == "run"
    assert held_by(guard) == OTHER


# ---- redelivered: the first run finished ----
@pytest.mark.parametrize("holder", [None, OTHER, ME])
def test_a_redelivered_prompt_whose_first_run_finished_returns_its_answer(holder) -> None:
    guard, client = make_guard()
    if holder is not None:
        claim_by(client, holder)
    first = FirstRun(ANSWER, ready_at=1)
    decision = guard.admit(REDELIVERED, results_of(first), longest=5, at_most_once=True)
    assert decision == Decision("return", value=ANSWER)
    assert decision.value is not ANSWER  # a copy, as the task returned dict(result)
    assert held_by(guard) == holder  # not taken over


def test_a_redelivered_prompt_whose_first_run_failed_raises_its_error() -> None:
    guard, client = make_guard()
    claim_by(client, OTHER)
    error = ToolError("exit status 1: boom", {"output": "boom", "ok": False})
    first = FirstRun(error, ready_at=1)
    decision = guard.admit(REDELIVERED, results_of(first), longest=5, at_most_once=False)
    assert decision.kind == "raise" and decision.error is error and decision.value is None
    assert held_by(guard) == OTHER


# ---- redelivered: the first run is still running ----
def test_a_redelivered_prompt_awaits_its_live_claimer_and_returns_its_answer() -> None:
    guard, client = make_guard()
    claim_by(client, OTHER)
    alive(client, OTHER)
    first = FirstRun(ANSWER, ready_at=3)  # admit looks once, the wait twice (one poll)
    decision = guard.admit(REDELIVERED, results_of(first), longest=5, at_most_once=False)
    assert decision == Decision("return", value=ANSWER)
    assert first.looks == 3
    assert held_by(guard) == OTHER


@pytest.mark.parametrize(
    ("at_most_once", "expected"), [(False, "run"), (True, "raise")], ids=["takes-over", "fails"]
)
def test_a_claimer_that_dies_while_awaited_is_taken_over_or_fails(at_most_once, expected) -> None:
    guard, client = make_guard()
    claim_by(client, OTHER)
    alive(client, OTHER)

    def die_at_second_look(looks: int) -> None:
        if looks == 2:
            del client.data[health_key(OTHER.worker)]

    first = FirstRun(on_look=die_at_second_look)
    decision = guard.admit(REDELIVERED, results_of(first), longest=5, at_most_once=at_most_once)
    assert decision.kind == expected
    assert first.looks == 2
    assert held_by(guard) == (ME if expected == "run" else OTHER)


# ---- redelivered: the first run's worker died ----
@pytest.mark.parametrize(
    "death",
    ["no-health-record", "newer-process", "our-own-earlier-run"],
)
def test_a_redelivered_prompt_whose_claimer_died_is_taken_over(death) -> None:
    guard, client = make_guard()
    if death == "our-own-earlier-run":
        claim_by(client, ME)
        alive(client, ME)  # our own claim, though we live: that execution ended
    else:
        claim_by(client, OTHER)
        if death == "newer-process":
            alive(client, OTHER, pid=OTHER.worker_pid + 1)
    first = FirstRun()
    decision = guard.admit(REDELIVERED, results_of(first), longest=5, at_most_once=False)
    assert decision == Decision("run")
    assert held_by(guard) == ME
    assert first.looks == 1  # looked once, did not wait


def test_an_at_most_once_prompt_whose_claimer_died_raises_worker_lost() -> None:
    guard, client = make_guard()
    claim_by(client, OTHER)
    first = FirstRun()
    decision = guard.admit(REDELIVERED, results_of(first), longest=5, at_most_once=True)
    assert decision.kind == "raise" and isinstance(decision.error, WorkerLost)
    assert "worker other@h was lost" in str(decision.error)
    assert "on_worker_lost is 'fail'" in str(decision.error)
    assert held_by(guard) == OTHER  # not taken over


@pytest.mark.parametrize("at_most_once", [False, True])
def test_a_redelivered_prompt_never_claimed_nor_answered_runs_and_claims(at_most_once) -> None:
    """A short prompt (no claim), or one whose worker died before it began."""
    guard, _ = make_guard()
    first = FirstRun()
    decision = guard.admit(REDELIVERED, results_of(first), longest=1, at_most_once=at_most_once)
    assert decision == Decision("run")
    assert held_by(guard) == ME


# ---- Decision ----
@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("run", {"value": ANSWER}),
        ("run", {"error": WorkerLost("x")}),
        ("return", {}),
        ("return", {"value": ANSWER, "error": WorkerLost("x")}),
        ("raise", {}),
        ("raise", {"value": ANSWER}),
    ],
)
def test_a_decision_carries_exactly_what_its_kind_needs(kind, fields) -> None:
    with pytest.raises(ValueError, match="inconsistent decision"):
        Decision(kind, **fields)


# ---- claim ----
def test_claim_takes_a_free_prompt_with_a_ttl() -> None:
    guard, client = make_guard()
    assert guard.claim("p1") is None
    assert held_by(guard) == ME
    assert client.ttl_ms[CLAIM_PREFIX + "p1"] == 60_000  # the guard's ttl, 60 s


def test_claim_of_a_held_prompt_returns_its_holder_and_keeps_it() -> None:
    guard, client = make_guard()
    claim_by(client, OTHER)
    assert guard.claim("p1") == OTHER
    assert held_by(guard) == OTHER


def test_claim_retries_a_claim_that_expired_between_set_and_get() -> None:
    guard, client = make_guard(VanishingClaims(OTHER, times=CLAIM_TRIES - 1))
    assert guard.claim("p1") is None
    assert held_by(guard) == ME
    assert [cmd for cmd, _ in client.log].count("set") == CLAIM_TRIES


def test_claim_gives_up_after_its_tries_on_a_claim_that_keeps_vanishing() -> None:
    guard, client = make_guard(VanishingClaims(OTHER, times=CLAIM_TRIES + 5))
    with pytest.raises(RuntimeError, match=f"could not claim prompt p1 in {CLAIM_TRIES} tries"):
        guard.claim("p1")
    assert [cmd for cmd, _ in client.log].count("set") == CLAIM_TRIES
