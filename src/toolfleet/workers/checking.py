"""The check task: a session's check command run in its instance's worktree, confined as
its tool is, on the worker that holds the session."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from toolfleet.broker import CHECK_TASK
from toolfleet.errors import ConfigError, SessionLost
from toolfleet.tool.sandbox import sandbox_for
from toolfleet.workers.tasks import PromptTask

__all__ = ["check"]

log = logging.getLogger(__name__)


@shared_task(bind=True, base=PromptTask, name=CHECK_TASK)  # type: ignore[untyped-decorator]
def check(
    self: PromptTask, command: str, session: str, timeout: float, turn: int = 0
) -> dict[str, Any]:
    """Run ``command`` in the worktree of ``session``'s instance (after ``turn`` repair
    turns); its CheckResult. The change recorded when the session ends carries the last
    check whose tree it has: ``ready`` if it passed, ``rejected`` if not."""
    parts = self.parts
    sup = parts.supervisor
    if sup.session != session:
        raise SessionLost(f"{sup.worker} is not held by session {session} (now: {sup.session})")
    workspace = parts.workspace
    if workspace is None:
        raise ConfigError(f"profile {sup.profile.name!r} has no worktree to check")
    instance_dir = getattr(sup.instance, "instance_dir", None)
    sandbox = None
    if isinstance(instance_dir, str):
        sandbox, _ = sandbox_for(sup.profile, instance_dir, str(workspace.path))
    result = workspace.check(
        command,
        timeout=timeout,
        turn=turn,
        sandbox=sandbox,
        passed_env=tuple(sup.profile.pass_env),
    )
    log.info(
        "%s: check of session %s %s in %.1f s",
        sup.worker,
        session,
        "passed" if result.passed else f"failed ({result.exit_status})",
        result.duration_ms / 1000,
    )
    return result.model_dump(mode="json")
