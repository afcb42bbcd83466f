"""The producer's side of a session's check: send it to the session's worker, wait."""

from __future__ import annotations

import time
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout

from toolfleet.broker import CHECK_TASK, direct_queue
from toolfleet.client.handle import raise_task_error
from toolfleet.client.unavailable import redis_errors
from toolfleet.errors import NoWorkers, ResultTimeout
from toolfleet.keys import health_key
from toolfleet.models import CheckResult

__all__ = ["session_check"]

#: seconds between looks at the worker's health record while its check runs
_LOOK_EVERY = 2.0


def session_check(
    fleet: Any, worker: str, session: str, command: str, timeout: float, turn: int = 0
) -> CheckResult:
    """Run ``command`` in the worktree of ``session`` on ``worker``; its result.

    NoWorkers when the worker's health record is gone meanwhile (it died: the session
    is lost), ResultTimeout when no result came within the check's timeout and a minute."""
    kwargs = {"command": command, "session": session, "timeout": float(timeout), "turn": turn}
    with redis_errors(fleet.settings):
        result = fleet.app.send_task(
            CHECK_TASK,
            kwargs=kwargs,
            queue=direct_queue(worker),
            argsrepr=repr(command[:80]),
            kwargsrepr=f"{{'session': {session!r}, 'turn': {turn}}}",
        )
    client = fleet.app.backend.client
    end = time.monotonic() + timeout + 60.0
    while True:
        try:
            value = result.get(timeout=_LOOK_EVERY, propagate=True)
        except CeleryTimeout:
            if not client.exists(health_key(worker)):
                raise NoWorkers(f"{worker} went away during the check") from None
            if time.monotonic() >= end:
                raise ResultTimeout(f"no result of the check on {worker}") from None
            continue
        except Exception as exc:
            raise_task_error(exc, fleet.settings, f"the check of session {session}")
        return CheckResult.model_validate(value)
