"""Health records in the result backend: one key per worker, with a TTL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from toolfleet.keys import WORKERS, RedisLike, free_key, health_key, idle_key, text
from toolfleet.models import InstanceHealth

__all__ = [
    "CLOCK_SLACK",
    "FREE_KEEP",
    "FREE_TTL_MS",
    "ask_registry",
    "forget_health",
    "idle_instances",
    "parse_health",
    "read_health",
    "readable",
    "registered",
    "worker_names",
    "write_health",
]

#: seconds a registry entry outlives its record's expiry before a reader removes it:
#: entries carry the writer's clock, so hosts whose clocks differ by less never lose a
#: live worker (the record's own TTL, kept by Redis, says whether it is alive)
CLOCK_SLACK = 60.0

#: wake-ups kept on a profile's free list, and how long the list lives without a push
FREE_KEEP = 16
FREE_TTL_MS = 60_000


def write_health(
    client: RedisLike, record: InstanceHealth, ttl: float, *, free: bool = False
) -> None:
    """Store ``record``, expiring after ``ttl`` seconds without a refresh, and register
    its worker (one round trip); ``free``: the instance just became free, so wake one
    producer waiting for a session of its profile (the record is written first)."""
    pipe = client.pipeline(transaction=False)
    pipe.set(health_key(record.worker), record.model_dump_json(), px=max(1, int(ttl * 1000)))
    pipe.zadd(WORKERS, {record.worker: time.time() + ttl})
    if record.state == "ready" and record.session is None:  # free: a session may take it
        pipe.zadd(idle_key(record.profile), {record.worker: time.time() + ttl})
    else:
        pipe.zrem(idle_key(record.profile), record.worker)
    if free:
        key = free_key(record.profile)
        pipe.lpush(key, record.worker)
        pipe.ltrim(key, 0, FREE_KEEP - 1)  # wake-ups nobody took: a few are enough
        pipe.pexpire(key, FREE_TTL_MS)
    pipe.execute()


def forget_health(client: RedisLike, worker: str, profile: str | None = None) -> None:
    """Delete ``worker``'s record, its registry entry and its entry among ``profile``'s
    free instances (a worker stopping cleanly)."""
    pipe = client.pipeline(transaction=False)
    pipe.delete(health_key(worker))
    pipe.zrem(WORKERS, worker)
    if profile is not None:
        pipe.zrem(idle_key(profile), worker)
    pipe.execute()


def idle_instances(client: RedisLike, profile: str, limit: int) -> list[InstanceHealth]:
    """Up to ``limit`` of ``profile``'s free instances, as their heartbeats last said
    (two round trips, whatever the size of the fleet; entries of workers that stopped
    writing removed on the way)."""
    key, now = idle_key(profile), time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(key, "-inf", f"({now}")
    pipe.zrangebyscore(key, now, "+inf", start=0, num=limit)
    _, workers = pipe.execute()
    names = [text(w) for w in workers]
    return parse_health(client.mget([health_key(w) for w in names]), profile) if names else []


def ask_registry(pipe: Any) -> None:
    """Queue on ``pipe`` the registry's two commands: remove the entries of workers that
    stopped writing (dead) more than :data:`CLOCK_SLACK` ago, then list the others (the
    second reply, for :func:`worker_names`)."""
    cutoff = time.time() - CLOCK_SLACK
    pipe.zremrangebyscore(WORKERS, "-inf", f"({cutoff}")
    pipe.zrangebyscore(WORKERS, cutoff, "+inf")


def worker_names(reply: list[Any]) -> list[str]:
    """The registry's listing (see :func:`ask_registry`) as sorted names."""
    return sorted(text(w) for w in reply)


def registered(client: RedisLike) -> list[str]:
    """Workers in the registry whose record may still live (the dead ones' entries
    removed on the way)."""
    pipe = client.pipeline(transaction=False)
    ask_registry(pipe)
    _, workers = pipe.execute()
    return worker_names(workers)


def parse_health(raws: list[Any], profile: str | None = None) -> list[InstanceHealth]:
    """The health records among ``raws`` (an MGET of health keys, in order): expired
    (None) and unreadable ones skipped; only ``profile``'s if given."""
    records = []
    for raw in raws:
        if raw is None:
            continue  # expired: the worker stopped beating
        try:
            record = InstanceHealth.model_validate(json.loads(raw))
        except (ValueError, ValidationError):
            continue
        if profile is None or record.profile == profile:
            records.append(record)
    return records


def read_health(client: RedisLike, profile: str | None = None) -> list[InstanceHealth]:
    """Every live health record (of ``profile`` if given), sorted by worker name.

    Two round trips whatever the size of the backend: the registry, then one MGET of
    its workers' records. A registered worker whose record expired is skipped (and its
    entry removed later); a record whose entry is missing reappears with its next beat.
    """
    workers = registered(client)
    return parse_health(client.mget([health_key(w) for w in workers]) if workers else [], profile)


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
