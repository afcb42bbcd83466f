"""What a tool instance gives back (Answer, ToolSnapshot) and the interface a supervisor drives."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from toolfleet.models import Usage
from toolfleet.profiles import Profile

__all__ = ["Answer", "Instance", "ToolSnapshot", "percentile", "rss_of", "snapshot_of"]


@dataclass(frozen=True)
class Answer:
    """A tool's cleaned response to one prompt."""

    output: str
    ok: bool
    status: int | None
    truncated: bool
    duration_ms: float
    #: what the tool reported spending (agents spoken to through a protocol)
    usage: Usage | None = None
    #: the agent's tool calls in this answer: name, input, result (a protocol's events)
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class ToolSnapshot:
    """Health of one instance at one moment."""

    pid: int | None
    generation: int
    state: str  # down | ready | busy
    prompts_served: int
    last_latency_ms: float | None
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    rss_bytes: int | None
    started_at: float
    uptime: float
    last_error: str | None
    #: strict, or none (with why, when strict was asked for and the host cannot)
    sandbox: str = "none"


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` (nearest rank), None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_of(pid: int | None) -> int | None:
    """Resident memory of process ``pid`` and every process under it, in bytes (a
    confined tool runs under its sandbox's processes), None when unknown."""
    if pid is None:
        return None
    total, seen, todo = 0, set(), [pid]
    while todo:
        one = todo.pop()
        if one in seen:
            continue
        seen.add(one)
        try:
            with open(f"/proc/{one}/statm", encoding="ascii") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{one}/task/{one}/children", encoding="ascii") as fh:
                todo += [int(child) for child in fh.read().split()]
        except (OSError, ValueError, IndexError):
            if one == pid:
                return None
    return total


def snapshot_of(
    instance: Instance, *, busy: bool, latencies: Iterable[float], alive: bool
) -> ToolSnapshot:
    """``instance``'s health now, from what every kind of instance keeps."""
    recent = list(latencies)
    pid = instance.pid
    return ToolSnapshot(
        pid=pid if alive else None,
        generation=instance.generation,
        state=("busy" if busy else "ready") if alive else "down",
        prompts_served=instance.prompts_served,
        last_latency_ms=recent[-1] if recent else None,
        p50_latency_ms=percentile(recent, 0.5),
        p95_latency_ms=percentile(recent, 0.95),
        rss_bytes=rss_of(pid) if alive else None,
        started_at=instance.started_at,
        uptime=max(0.0, time.time() - instance.started_at),
        last_error=instance.last_error,
        sandbox=getattr(instance, "sandbox", "none"),
    )


class Instance(Protocol):
    """What the supervisor needs of a tool instance (ToolInstance or FakeInstance)."""

    profile: Profile
    generation: int
    prompts_served: int
    started_at: float
    last_error: str | None

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...
    def alive(self) -> bool: ...
    def ask(self, text: str, timeout: float | None = None) -> Answer: ...
    def abort(self, mode: str, why: str) -> bool: ...
    def partial(self) -> str | None: ...
    def reset(self) -> bool: ...
    def close(self, grace: float | None = None) -> None: ...
    def snapshot(self) -> ToolSnapshot: ...
