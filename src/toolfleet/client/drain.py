"""Draining workers before they stop: no new work reaches them, and what they hold finishes.

A drained worker no longer consumes its profile's shared queue (Celery's remote-control
``cancel_consumer``) and takes no new session (the drain holds its lease key, which
every session has to acquire first), but it keeps its direct queue: the session that
holds it goes on being served until its producer closes it. The drain ends once none
of the workers runs or holds a prompt and none is leased to a session.

Each round looks at what every worker really consumes (``inspect active_queues``),
cancels its shared queue again where needed, holds the lease keys that are free, then
reads the health records. A worker is drained once :data:`QUIET_ROUNDS` rounds in a row
found its shared queue off and its record idle, the last record written after the
first of them. The rounds matter because a worker turns its shared queue back on by
itself when a session of it ends (its own switch), and that change reaches its event
loop only after the next message wakes the loop: an ``inspect`` can answer just before
it, never two in a row. Records are compared with records, never with this process's
clock, so a worker's clock may differ.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import toolfleet.client.leases as leases
from toolfleet.broker import shared_queue
from toolfleet.client.protocols import FleetLike
from toolfleet.models import InstanceHealth

__all__ = ["HOLD_AFTER", "QUIET_ROUNDS", "DrainResult", "drain"]

#: seconds the drain's hold on the lease keys outlives its timeout: long enough for the
#: worker to be stopped (a preStop hook's SIGTERM follows at once), after which the key
#: expires and the instance (if it still runs) can be leased again
HOLD_AFTER = 60.0

#: states in which an instance runs nothing and starts nothing by itself
_IDLE_STATES = ("ready", "failed", "stopping")


#: rounds in a row a worker must look drained (see the module's docstring)
QUIET_ROUNDS = 3


@dataclass
class _Watch:
    """What the drain knows of one worker."""

    worker: str
    profile: str
    #: rounds in a row that found its shared queue off and its record idle
    quiet: int = 0
    #: ``updated_at`` of its record in the first of those rounds
    mark: float = 0.0
    #: what it waits for now (shown when the time is up)
    waiting: str = "not looked at yet"
    #: the last line reported about it
    said: str = ""
    #: its shared queue was seen off (and that was reported)
    stopped: bool = False
    drained: bool = False

    @property
    def queue(self) -> str:
        return shared_queue(self.profile)


@dataclass(frozen=True)
class DrainResult:
    """How a drain ended: ``drained``, or what each worker still waited for."""

    drained: bool
    workers: tuple[str, ...]
    #: worker -> what it still waited for when the time was up (empty when drained)
    waiting: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0


def _consumed(fleet: FleetLike, workers: list[str], timeout: float) -> dict[str, set[str]]:
    """The queues each of ``workers`` consumes now (workers that did not answer are
    left out)."""
    inspector = fleet.app.control.inspect(destination=workers, timeout=timeout, limit=len(workers))
    replies: dict[str, list[dict[str, Any]]] | None = inspector.active_queues()
    return {node: {str(q.get("name")) for q in queues} for node, queues in (replies or {}).items()}


def _waiting_for(record: InstanceHealth, holder: str | None, drain_id: str) -> str:
    """Why ``record``'s worker cannot stop yet ("" when nothing keeps it)."""
    if record.state == "busy" or record.busy_since is not None:
        return f"waiting for prompt {record.prompt_id or '(no id)'} to finish"
    if record.holding:
        return f"waiting for {len(record.holding)} received prompt(s) to run"
    if record.session is not None:
        return f"waiting for session {record.session} to close"
    if record.state not in _IDLE_STATES:
        return f"waiting while it is {record.state}"
    if holder != drain_id and record.state != "stopping":
        return f"waiting for session {holder} to take or give up its lease"
    return ""


def _judge(
    watch: _Watch,
    record: InstanceHealth | None,
    queues: set[str] | None,
    holder: str | None,
    drain_id: str,
) -> list[str]:
    """Update ``watch`` from this round's look; the lines to report."""
    if record is None:  # its record expired: the worker is gone
        watch.drained, watch.waiting = True, ""
        return ["gone"]
    lines = []
    if queues is None:
        reason = "no answer to remote control yet"
    elif watch.queue in queues:
        reason = f"stopping its consumption of {watch.queue}"
    else:
        if not watch.stopped:
            watch.stopped = True
            lines.append(f"takes no more prompts from {watch.queue}")
        reason = _waiting_for(record, holder, drain_id)
    if reason:
        watch.quiet, watch.waiting = 0, reason
        return [*lines, reason]
    watch.quiet += 1
    if watch.quiet == 1:
        watch.mark = record.updated_at
    elif watch.quiet >= QUIET_ROUNDS and record.updated_at > watch.mark:
        watch.drained, watch.waiting = True, ""
        return [*lines, "drained"]
    watch.waiting = "making sure it stays idle"
    return lines


def drain(
    fleet: FleetLike,
    select: Callable[[InstanceHealth], bool],
    *,
    timeout: float,
    interval: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> DrainResult:
    """Drain the workers whose health record ``select`` picks (looked up every round,
    so a worker that starts meanwhile is drained too); wait up to ``timeout`` seconds.

    ``progress`` is called with one line whenever a worker's situation changes.
    """
    say = progress or (lambda _line: None)
    client = fleet.app.backend.client
    drain_id = f"drain-{uuid.uuid4().hex[:12]}"
    hold = timeout + HOLD_AFTER
    started = time.monotonic()
    end = started + timeout
    watches: dict[str, _Watch] = {}

    def report(watch: _Watch, *lines: str) -> None:
        for line in lines:
            if line != watch.said:
                watch.said = line
                say(f"{watch.worker}: {line}")

    while True:
        for seen in fleet.status():
            if seen.worker not in watches and select(seen):
                watches[seen.worker] = _Watch(seen.worker, seen.profile)
                report(watches[seen.worker], f"draining (profile {seen.profile})")
        pending = [w for w in watches.values() if not w.drained]
        if pending:
            look = min(1.0, max(0.1, end - time.monotonic()))
            consumed = _consumed(fleet, [w.worker for w in pending], look)
            holders = {}
            for watch in pending:
                if watch.queue in consumed.get(watch.worker, ()):
                    fleet.app.control.cancel_consumer(watch.queue, destination=[watch.worker])
                holder = leases.holder(client, watch.worker)
                if holder is None and leases.acquire(client, watch.worker, drain_id, hold):
                    holder = drain_id
                holders[watch.worker] = holder
            records = {r.worker: r for r in fleet.status()}
            for watch in pending:
                record, queues = records.get(watch.worker), consumed.get(watch.worker)
                report(watch, *_judge(watch, record, queues, holders[watch.worker], drain_id))
        elapsed = time.monotonic() - started
        names = tuple(sorted(watches))
        if all(w.drained for w in watches.values()):
            return DrainResult(True, names, {}, elapsed)
        if time.monotonic() >= end:
            waiting = {w.worker: w.waiting for w in watches.values() if not w.drained}
            return DrainResult(False, names, waiting, elapsed)
        time.sleep(interval)
