"""Health records in the result backend: one key per worker, with a TTL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from toolfleet.keys import HEALTH_PREFIX, RedisLike, health_key
from toolfleet.models import InstanceHealth

__all__ = [
    "read_health",
    "readable",
    "write_health",
]


def write_health(client: RedisLike, record: InstanceHealth, ttl: float) -> None:
    """Store ``record``, expiring after ``ttl`` seconds without a refresh (one command)."""
    client.set(health_key(record.worker), record.model_dump_json(), px=max(1, int(ttl * 1000)))


def read_health(client: RedisLike, profile: str | None = None) -> list[InstanceHealth]:
    """Every live health record (of ``profile`` if given), sorted by worker name."""
    keys = sorted(client.scan_iter(match=HEALTH_PREFIX + "*", count=1000))
    records = []
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue  # expired between SCAN and MGET
        try:
            record = InstanceHealth.model_validate(json.loads(raw))
        except (ValueError, ValidationError):
            continue
        if profile is None or record.profile == profile:
            records.append(record)
    return sorted(records, key=lambda r: r.worker)


def _ms(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f} ms"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def readable(record: InstanceHealth, now: float | None = None) -> dict[str, Any]:
    """``record`` in units a person reads (ms, MiB, ages, UTC times), for Celery's
    ``inspect stats`` and Flower's worker page."""
    now = time.time() if now is None else now
    started = datetime.fromtimestamp(record.started_at, UTC).isoformat(timespec="seconds")
    return {
        "state": record.state,
        "profile": record.profile,
        "session": record.session,
        "prompt running for": None if record.busy_since is None else _age(now - record.busy_since),
        "tool pid": record.pid,
        "generation": record.generation,
        "restarts": record.restarts,
        "prompts served": record.prompts_served,
        "last latency": _ms(record.last_latency_ms),
        "p50 latency": _ms(record.p50_latency_ms),
        "p95 latency": _ms(record.p95_latency_ms),
        "rss": None if record.rss_bytes is None else f"{record.rss_bytes / 2**20:.1f} MiB",
        "uptime": _age(now - record.started_at),
        "started": started,
        "last error": record.last_error,
        "queues": ", ".join(record.queues),
        "holding": ", ".join(record.holding),
        "version": record.version,
    }
