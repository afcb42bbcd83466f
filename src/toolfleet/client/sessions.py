"""Producer-side sessions: exclusive, ordered conversations pinned to one instance."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Literal

import redis

import toolfleet.client.leases as leases
from toolfleet.broker.away import ride_out
from toolfleet.client.changes import ChangeBook
from toolfleet.client.checking import session_check
from toolfleet.client.protocols import FleetLike, Handle
from toolfleet.ending import mark_end
from toolfleet.errors import BudgetSpent, NoWorkers, SessionLost, ToolfleetError
from toolfleet.health import idle_instances
from toolfleet.keys import free_key, rr_key, session_key
from toolfleet.models import Changes, CheckResult, InstanceHealth, Usage

__all__ = [
    "FIRST_PAUSE",
    "IDLE_SAMPLE",
    "MAX_PAUSE",
    "Session",
    "Strategy",
    "attach",
    "open_session",
    "place",
    "wait_for_free",
]

log = logging.getLogger(__name__)

Strategy = Literal["least-busy", "round-robin"]


def place(records: list[InstanceHealth], strategy: Strategy, turn: int = 0) -> list[InstanceHealth]:
    """Candidate instances for a new session, best first.

    Only live, unleased instances qualify. ``least-busy`` prefers ready over busy, then
    the fewest prompts served; ``round-robin`` rotates the workers (sorted by name) by
    ``turn``, a counter shared by all producers.
    """
    free = [r for r in records if r.state in ("ready", "busy") and r.session is None]
    if strategy == "least-busy":
        return sorted(free, key=lambda r: (r.state != "ready", r.prompts_served, r.worker))
    if strategy == "round-robin":
        ordered = sorted(free, key=lambda r: r.worker)
        names = sorted({r.worker for r in records})
        if not ordered:
            return []
        start = names[turn % len(names)]
        first = next((i for i, r in enumerate(ordered) if r.worker >= start), 0)
        return ordered[first:] + ordered[:first]
    raise ValueError(f"unknown strategy {strategy!r}; use 'least-busy' or 'round-robin'")


class Session:
    """A lease on one instance: prompts run there, in order, with nobody else's between.

    Use it as a context manager. While it is open a thread renews the lease; ``close``
    waits for the prompts sent, then releases the instance (which is reset before reuse).
    """

    def __init__(
        self,
        fleet: FleetLike,
        profile: str,
        worker: str,
        session_id: str,
        ttl: float,
        generation: int | None = None,
        *,
        renew: bool = True,
    ) -> None:
        self.fleet = fleet
        self.profile = profile
        self.worker = worker
        self.id = session_id
        self.ttl = ttl
        self.generation = generation
        self._handles: list[Handle] = []
        #: every prompt sent, and the usage of those answered (by id)
        self._sent: list[Handle] = []
        self._usage: dict[str, Usage | None] = {}
        #: send nothing more once the prompts' reported cost reaches this (BudgetSpent)
        self.budget: float | None = None
        self._lost: str | None = None
        self._closed = threading.Event()
        self._renewer: threading.Thread | None = None
        if renew:
            self._renewer = threading.Thread(
                target=self._renew_loop, name=f"toolfleet-lease-{session_id}", daemon=True
            )
            self._renewer.start()

    @property
    def client(self) -> Any:
        return self.fleet.app.backend.client

    def _renew_loop(self) -> None:
        while not self._closed.wait(self.ttl / 3):
            try:
                if not leases.renew(self.client, self.worker, self.id, self.ttl):
                    self._lost = "the lease expired before it could be renewed"
                    return
            except Exception as exc:  # Redis briefly away: try again next time
                log.warning("session %s: lease renewal failed: %s", self.id, exc)

    @property
    def usage(self) -> Usage | None:
        """What the session's answered prompts reported spending (None: nothing known)."""
        for handle in self._sent:
            if handle.id not in self._usage and handle.ready():
                try:
                    self._usage[handle.id] = handle.get(timeout=5.0).usage
                except ToolfleetError:
                    self._usage[handle.id] = None
        return Usage.total(self._usage.values())

    def send(self, text: str, timeout: float | None = None) -> Handle:
        """Enqueue ``text`` into this session (runs after the ones sent before).

        With a ``budget``, raises BudgetSpent once the answered prompts' cost reached it;
        behind a model gateway the prompt carries what is left of it, kept during the
        prompt (the model call that would pass it is refused: BudgetSpent).
        """
        if self._closed.is_set():
            raise SessionLost(f"session {self.id} is closed")
        left = None
        if self.budget is not None:
            usage = self.usage
            spent = usage.cost if usage is not None else 0.0
            if spent >= self.budget:
                raise BudgetSpent(
                    f"session {self.id} spent {spent:.4f} of its budget {self.budget:g}"
                )
            left = self.budget - spent
        if self._lost:
            raise SessionLost(f"session {self.id} lost {self.worker}: {self._lost}")
        seq = leases.next_seq(self.client, self.id, self.ttl)
        handle = self.fleet.submit(
            text,
            self.profile,
            timeout=timeout,
            worker=self.worker,
            session=self.id,
            seq=seq,
            budget=left,
        )
        self._handles = [h for h in self._handles if not h.ready()] + [handle]
        self._sent.append(handle)
        return handle

    def check(self, command: str, timeout: float = 600.0, turn: int = 0) -> CheckResult:
        """Run ``command`` in the instance's worktree (a worktree profile) once the
        prompts sent have been answered; its result. The change recorded at close is
        ``ready`` if the last check on its tree passed, ``rejected`` if it failed.
        ``turn``: the repair turns given before it (kept with the change)."""
        if self._closed.is_set():
            raise SessionLost(f"session {self.id} is closed")
        if self._lost:
            raise SessionLost(f"session {self.id} lost {self.worker}: {self._lost}")
        return session_check(self.fleet, self.worker, self.id, command, timeout, turn)

    def cancel(self) -> dict[str, str]:
        """Cancel the session's prompts not answered yet (the running one is interrupted,
        the queued ones never run); what became of each. The session stays open, but a
        tool restarted because it ignored the interrupt loses the session (SessionLost)."""
        waiting = [h.id for h in self._handles if not h.ready()]
        return self.fleet.cancel(*waiting) if waiting else {}

    def close(self, wait: float = 60.0, keep: bool = True) -> None:
        """Wait (up to ``wait`` s) for the prompts sent, then release the instance.
        ``keep`` (a worktree profile): its worker records what the session changed;
        False gives the session up (nothing of it is recorded, whenever its worker
        gets to it)."""
        if self._closed.is_set():
            return
        end = time.monotonic() + wait
        for handle in self._handles:
            while not handle.ready() and time.monotonic() < end:
                time.sleep(0.01)
        self._closed.set()
        try:
            # before the lease ends (its worker reads it), and through a failover: a keep
            # lost is the session's work lost
            ride_out(lambda: mark_end(self.client, self.id, keep), f"session {self.id}")
            leases.release(self.client, self.worker, self.id)
            leases.ask_worker(self.client, self.worker, "drop", self.id, wait=0)
        except Exception as exc:  # the worker notices the missing lease key by itself
            log.warning("session %s: release failed: %s", self.id, exc)

    def changes(self, timeout: float = 10.0) -> Changes | None:
        """What the session changed in its instance's worktree (a closed session of a
        worktree profile), once its worker has recorded it; None if it recorded nothing."""
        if not self._closed.is_set():
            raise ToolfleetError(f"session {self.id} is open: close it first")
        book = ChangeBook(self.client, float(self.fleet.settings.result_expires))
        return book.wait(self.id, timeout)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Session {self.id} on {self.worker}>"


#: free instances a producer reads to place a session (their heartbeats keep the list)
IDLE_SAMPLE = 8

#: the first and the longest wait between two looks for a free instance (a worker's
#: word that one became free ends a wait at once)
FIRST_PAUSE = 0.05
MAX_PAUSE = 0.25


def wait_for_free(client: Any, profile: str, seconds: float) -> None:
    """Block up to ``seconds`` for a word (see :func:`toolfleet.health.write_health`)
    that an instance of ``profile`` became free; one word wakes one waiter."""
    if seconds <= 0:
        return
    try:
        client.blpop([free_key(profile)], timeout=seconds)
    except redis.ResponseError:  # a Redis before 6 takes whole seconds only
        time.sleep(seconds)


def open_session(
    fleet: FleetLike,
    profile: str,
    *,
    strategy: Strategy = "least-busy",
    worker: str | None = None,
    ttl: float | None = None,
    wait: float = 30.0,
    renew: bool = True,
    base: str | None = None,
) -> Session:
    """Lease an instance of ``profile`` (or ``worker``); wait up to ``wait`` s for one.
    ``base``: the commit a worktree profile's instance starts the session from."""
    ttl = ttl or fleet.settings.session_ttl
    client = fleet.app.backend.client
    session_id = uuid.uuid4().hex[:16]
    end = time.monotonic() + wait
    refusals: list[str] = []
    pause = FIRST_PAUSE  # doubling to MAX_PAUSE: an instance resetting is soon free
    while True:
        records = []
        if worker is None and strategy == "least-busy":  # a few free ones, not the fleet
            records = leases.unleased(client, idle_instances(client, profile, IDLE_SAMPLE))
        if not place(records, strategy):
            records = leases.unleased(client, fleet.status(profile))
        if worker is not None:
            records = [r for r in records if r.worker == worker]
        turn = int(client.incr(rr_key(profile))) - 1 if strategy == "round-robin" else 0
        for record in place(records, strategy, turn):
            if not leases.acquire(client, record.worker, session_id, ttl):
                continue
            answer = leases.ask_worker(client, record.worker, "take", session_id, base)
            if answer and "ok" in answer:
                info = {"worker": record.worker, "profile": profile}
                leases.write_session(client, session_id, info, ttl)
                return Session(
                    fleet,
                    profile,
                    record.worker,
                    session_id,
                    ttl,
                    answer.get("generation"),
                    renew=renew,
                )
            leases.release(client, record.worker, session_id)
            refusals.append(f"{record.worker}: {(answer or {}).get('error', 'no reply')}")
        if time.monotonic() >= end:
            target = f"worker {worker!r}" if worker else f"profile {profile!r}"
            seen = f" ({'; '.join(refusals[-3:])})" if refusals else ""
            raise NoWorkers(
                f"no free instance of {target} for a session within {wait:g} s: "
                f"{len(records)} instance(s), all leased, busy resetting or down{seen}"
            )
        if strategy == "round-robin":
            client.decr(rr_key(profile))  # this turn was not used
        # wait for a worker's word that an instance became free, or the pause: a look
        # again right after an instance frees, not up to a pause later (and no polling)
        wait_for_free(client, profile, min(pause, max(0.0, end - time.monotonic())))
        pause = min(MAX_PAUSE, pause * 2)


def attach(fleet: FleetLike, session_id: str) -> Session:
    """A session opened elsewhere (e.g. by ``toolfleet session open``), by its id."""
    client = fleet.app.backend.client
    info = leases.read_session(client, session_id)
    if info is None or leases.holder(client, info["worker"]) != session_id:
        raise SessionLost(f"session {session_id} is unknown, closed or expired")
    ttl = max(1.0, client.pttl(session_key(session_id)) / 1000)
    leases.renew(client, info["worker"], session_id, ttl)
    return Session(fleet, info["profile"], info["worker"], session_id, ttl, renew=False)
