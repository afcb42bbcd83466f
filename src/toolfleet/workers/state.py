"""The process-global slot through which tasks reach this worker's supervisor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import NoWorkers

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["current", "install", "uninstall"]

_current: Supervisor | None = None


def install(supervisor: Supervisor) -> None:
    """Make ``supervisor`` this process's instance owner (done by the bootstep)."""
    global _current
    _current = supervisor


def uninstall() -> None:
    global _current
    _current = None


def current() -> Supervisor:
    """This worker's supervisor, or NoWorkers if the process runs no tool."""
    if _current is None:
        raise NoWorkers("this worker process runs no tool instance (start it with --profile)")
    return _current
