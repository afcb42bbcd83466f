"""Redis gone for a moment (a restart, a failover): a worker's operation retried until
Redis is back, rather than failing the prompt it was for."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

__all__ = ["AWAY", "RIDE_OUT_FOR", "ride_out"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the errors that mean Redis is away (refusing, unreachable, still loading its data)
AWAY = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)

#: seconds an operation is retried while Redis is away before its error is raised
RIDE_OUT_FOR = 120.0


def ride_out(
    operation: Callable[[], T],
    what: str,
    tries_for: float | None = None,
    errors: tuple[type[BaseException], ...] = AWAY,
    away: str = "Redis",
) -> T:
    """``operation()``, called again (0.1 s, doubling to 2 s apart) while it fails with
    one of ``errors`` (:data:`AWAY`; or e.g. RedisUnavailable, the fleet's word for
    them; or GitError with ``away`` "the git host"), for ``tries_for`` seconds at most
    (:data:`RIDE_OUT_FOR`); then its last error is raised. ``what`` names it in the
    log. Only for operations safe to repeat."""
    tries_for = RIDE_OUT_FOR if tries_for is None else tries_for
    end = time.monotonic() + tries_for
    pause = 0.1
    warned = False
    while True:
        try:
            return operation()
        except errors as exc:
            if time.monotonic() + pause > end:
                log.error("%s: %s away for %g s, giving up: %s", what, away, tries_for, exc)
                raise
            if not warned:
                log.warning("%s: %s away, retrying until it is back: %s", what, away, exc)
                warned = True
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
