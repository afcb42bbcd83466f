"""Health records in the result backend: one key per worker, with a TTL."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from .models import InstanceHealth

__all__ = ["HEALTH_PREFIX", "RedisLike", "health_key", "read_health", "write_health"]

HEALTH_PREFIX = "toolfleet:health:"


#: a redis-py client (Celery's result backend ``.client`` or ``redis.Redis``)
RedisLike = Any


def health_key(worker: str) -> str:
    """The Redis key of ``worker``'s health record."""
    return HEALTH_PREFIX + worker


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
