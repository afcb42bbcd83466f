"""Remote-control commands: ``tool_health`` (inspect) and ``tool_restart`` (control)."""

from __future__ import annotations

from typing import Any

from celery.worker.control import control_command, inspect_command

from ..errors import NoWorkers
from . import state

__all__ = ["tool_health", "tool_restart"]


@inspect_command()  # type: ignore[untyped-decorator]
def tool_health(panel: Any) -> dict[str, Any]:
    """This worker's tool health record."""
    try:
        return state.current().health().model_dump(mode="json")
    except NoWorkers as exc:
        return {"error": exc.message}


@control_command()  # type: ignore[untyped-decorator]
def tool_restart(panel: Any) -> dict[str, Any]:
    """Restart this worker's tool (after the running prompt); clears a crash loop."""
    try:
        sup = state.current()
    except NoWorkers as exc:
        return {"error": exc.message}
    sup.restart("restart requested by remote control")
    return {"ok": f"restarted, generation {sup.instance.generation}", "state": sup.state}
