"""The process-global slot through which tasks reach this worker's parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from toolfleet.errors import NoWorkers

if TYPE_CHECKING:
    from toolfleet.workers.guard import DeliveryGuard
    from toolfleet.workers.lease import LeaseKeeper
    from toolfleet.workers.supervisor import Supervisor

__all__ = ["WorkerParts", "current", "install", "parts", "uninstall"]


@dataclass(frozen=True)
class WorkerParts:
    """What the bootstep built for this worker process."""

    supervisor: Supervisor
    guard: DeliveryGuard | None = None
    leases: LeaseKeeper | None = None


_parts: WorkerParts | None = None


def install(parts_: WorkerParts) -> None:
    """Publish this process's worker parts (done by the bootstep)."""
    global _parts
    _parts = parts_


def uninstall() -> None:
    global _parts
    _parts = None


def parts() -> WorkerParts:
    """This worker's parts, or NoWorkers if the process runs no tool."""
    if _parts is None:
        raise NoWorkers("this worker process runs no tool instance (start it with --profile)")
    return _parts


def current() -> Supervisor:
    """This worker's supervisor."""
    return parts().supervisor
