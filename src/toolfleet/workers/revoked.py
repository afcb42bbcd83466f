"""Prompts cancelled while no worker heard it: loaded into Celery's revoked set at start."""

from __future__ import annotations

import logging
import time

from celery.worker import state as worker_state

from toolfleet.keys import CANCELLED, RedisLike, text

__all__ = ["load_cancelled"]

log = logging.getLogger(__name__)


def load_cancelled(client: RedisLike) -> int:
    """Add the unexpired cancelled prompt ids to this worker's revoked set (Celery then
    drops their messages unrun, storing them as revoked); how many there were."""
    try:
        ids = client.zrangebyscore(CANCELLED, time.time(), "+inf")
    except Exception as exc:  # Redis not there yet: the revoke broadcasts still reach us
        log.warning("could not read the cancelled prompts: %s", exc)
        return 0
    for raw in ids:
        worker_state.revoked.add(text(raw))
    if ids:
        log.info("%d cancelled prompt(s) will not run here", len(ids))
    return len(ids)
