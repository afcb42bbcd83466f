"""The process-global slot through which tasks reach this worker's parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from toolfleet.errors import NoWorkers
from toolfleet.workers.tracker import PromptTracker

if TYPE_CHECKING:
    from toolfleet.workers.guard import DeliveryGuard
    from toolfleet.workers.lease import LeaseKeeper
    from toolfleet.workers.supervisor import Supervisor
    from toolfleet.workers.workspace import Worktree

__all__ = ["WorkerParts", "current", "install", "installed", "parts", "uninstall"]


@dataclass
class WorkerParts:
    """What the worker's steps built for this process (the tool step makes it; the lease
    step adds its keeper)."""

    supervisor: Supervisor
    guard: DeliveryGuard | None = None
    leases: LeaseKeeper | None = None
    workspace: Worktree | None = None
    tracker: PromptTracker = field(default_factory=PromptTracker)


_parts: WorkerParts | None = None


def install(parts_: WorkerParts) -> None:
    """Publish this process's worker parts (done by the bootstep)."""
    global _parts
    _parts = parts_


def uninstall() -> None:
    global _parts
    _parts = None


def installed() -> bool:
    """Whether this process runs a tool (its parts are installed)."""
    return _parts is not None


def parts() -> WorkerParts:
    """This worker's parts, or NoWorkers if the process runs no tool."""
    if _parts is None:
        raise NoWorkers("this worker process runs no tool instance (start it with --profile)")
    return _parts


def current() -> Supervisor:
    """This worker's supervisor."""
    return parts().supervisor
