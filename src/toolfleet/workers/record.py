"""A worker's health record, built from its supervisor and its tool's snapshot."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from toolfleet._version import __version__
from toolfleet.models import InstanceHealth

if TYPE_CHECKING:
    from toolfleet.workers.supervisor import Supervisor

__all__ = ["health_record"]


def health_record(sup: Supervisor) -> InstanceHealth:
    """``sup``'s health record now, as the heartbeat publishes it."""
    snap = sup.instance.snapshot()
    return InstanceHealth(
        worker=sup.worker,
        profile=sup.profile.name,
        state=sup.public_state,
        pid=snap.pid,
        worker_pid=os.getpid(),
        generation=snap.generation,
        restarts=sup.restarts,
        prompts_served=sup.served,
        last_latency_ms=snap.last_latency_ms,
        p50_latency_ms=snap.p50_latency_ms,
        p95_latency_ms=snap.p95_latency_ms,
        rss_bytes=snap.rss_bytes,
        started_at=snap.started_at,
        updated_at=time.time(),
        last_error=sup.last_error or snap.last_error,
        queues=list(sup.queues),
        sandbox=snap.sandbox,
        session=sup.session,
        busy_since=sup.busy_since,
        prompt_id=sup.prompt_id,
        usage_total=sup.usage_total,
        version=__version__,
    )
