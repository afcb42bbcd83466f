"""Remote-control commands: ``tool_health`` (inspect), ``tool_restart``, ``tool_cancel``,
session leases. None of them waits for a running prompt."""

from __future__ import annotations

from typing import Any

from celery.worker.control import control_command, inspect_command

from toolfleet.errors import NoWorkers
from toolfleet.workers import state

__all__ = ["tool_cancel", "tool_health", "tool_lease", "tool_release", "tool_restart"]


@inspect_command()  # type: ignore[untyped-decorator]
def tool_health(panel: Any) -> dict[str, Any]:
    """This worker's tool health record."""
    try:
        return state.current().health().model_dump(mode="json")
    except NoWorkers as exc:
        return {"error": exc.message}


@control_command()  # type: ignore[untyped-decorator]
def tool_restart(panel: Any) -> dict[str, Any]:
    """Restart this worker's tool now (a running prompt fails with ToolCrashed); clears
    a crash loop."""
    try:
        sup = state.current()
    except NoWorkers as exc:
        return {"error": exc.message}
    sup.restart("restart requested by remote control")
    return {"ok": f"restarted, generation {sup.instance.generation}", "state": sup.state}


@control_command(args=[("prompt_id", str)], signature="<prompt_id>")  # type: ignore[untyped-decorator]
def tool_cancel(panel: Any, prompt_id: str) -> dict[str, Any]:
    """Interrupt prompt ``prompt_id`` if this worker is running it."""
    try:
        sup = state.current()
    except NoWorkers as exc:
        return {"error": exc.message}
    if sup.cancel(prompt_id, "cancelled by request"):
        return {"ok": f"cancelling {prompt_id}"}
    return {"error": f"{prompt_id} is not running here"}


@control_command(  # type: ignore[untyped-decorator]
    args=[("session", str), ("base", str)], signature="<session> [base]"
)
def tool_lease(panel: Any, session: str, base: str | None = None) -> dict[str, Any]:
    """Pin this worker's instance to ``session`` (whose lease key the producer holds);
    ``base``: the commit its worktree starts from (default: the profile's base)."""
    keeper = state.parts().leases
    return {"error": "no lease support"} if keeper is None else keeper.take(session, base)


@control_command(args=[("session", str)], signature="<session>")  # type: ignore[untyped-decorator]
def tool_release(panel: Any, session: str) -> dict[str, Any]:
    """``session`` closed: reset the instance and return it to the shared queue."""
    keeper = state.parts().leases
    return {"error": "no lease support"} if keeper is None else keeper.drop(session)
