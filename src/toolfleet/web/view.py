"""What the page shows, read from Redis in two round trips whatever the fleet's size."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

from pydantic import ValidationError

from toolfleet.gateway.stats import upstream_stats
from toolfleet.health import ask_registry, parse_health, worker_names
from toolfleet.keys import (
    CHANGES_INDEX,
    RUNS,
    RedisLike,
    change_key,
    health_key,
    run_key,
    text,
)
from toolfleet.models import Changes, InstanceHealth

__all__ = ["FleetView", "change_row", "instance_row", "natural", "run_row", "session_rows"]

log = logging.getLogger(__name__)

#: files of a change listed by name (the rest counted)
_FILES_SHOWN = 20


def natural(name: str) -> tuple[Any, ...]:
    """A sort key putting ``echo2`` before ``echo10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def instance_row(record: InstanceHealth) -> dict[str, Any]:
    """One instance as the page shows it (no heartbeat time: an unchanged instance
    gives an unchanged row, and no update is sent)."""
    usage = record.usage_total
    return {
        "worker": record.worker,
        "profile": record.profile,
        "state": record.state,
        "pid": record.pid,
        "session": record.session,
        "prompt_id": record.prompt_id,
        "busy_since": record.busy_since,
        "generation": record.generation,
        "restarts": record.restarts,
        "prompts_served": record.prompts_served,
        "last_latency_ms": record.last_latency_ms,
        "p50_latency_ms": record.p50_latency_ms,
        "p95_latency_ms": record.p95_latency_ms,
        "rss_bytes": record.rss_bytes,
        "started_at": record.started_at,
        "usage": None if usage is None else usage.model_dump(),
        "last_error": record.last_error,
        "version": record.version,
    }


def session_rows(records: list[InstanceHealth]) -> list[dict[str, Any]]:
    """The sessions holding instances (from the health records), by id."""
    rows = [
        {
            "id": r.session,
            "worker": r.worker,
            "profile": r.profile,
            "state": r.state,
            "prompt_id": r.prompt_id,
            "busy_since": r.busy_since,
        }
        for r in records
        if r.session is not None
    ]
    return sorted(rows, key=lambda row: str(row["id"]))


def run_row(raw: dict[Any, Any]) -> dict[str, Any] | None:
    """A run's progress hash as numbers (None when it is no run's)."""
    fields = {text(k): text(v) for k, v in (raw or {}).items()}
    if "id" not in fields:
        return None

    def number(name: str, kind: type[int] | type[float]) -> int | float:
        try:
            return kind(fields.get(name, 0))
        except ValueError:
            return kind(0)

    row: dict[str, Any] = {k: fields.get(k, "") for k in ("id", "profile", "state", "producer")}
    for name in ("total", "done", "failed", "retried", "skipped", "outstanding"):
        row[name] = number(name, int)
    for name in ("rate", "started", "updated"):
        row[name] = number(name, float)
    return row


#: the states of a change waiting for someone: not yet applied, discarded or empty
_TO_REVIEW = ("pending", "ready", "rejected")


def change_row(record: Changes) -> dict[str, Any]:
    """A change waiting for review, without its patch (the page asks for it)."""
    return {
        "id": record.id,
        "worker": record.worker,
        "branch": record.branch,
        "base": record.base[:12],
        "files": record.files[:_FILES_SHOWN],
        "more_files": max(0, len(record.files) - _FILES_SHOWN),
        "insertions": record.insertions,
        "deletions": record.deletions,
        "empty": record.commit is None,
        "created_at": record.created_at,
        "state": record.state,
        "check": None
        if record.check is None
        else {
            "command": record.check.command,
            "passed": record.check.passed,
            "exit_status": record.check.exit_status,
            "output": record.check.output,
            "repairs": record.repairs,
        },
    }


class FleetView:
    """Reads the fleet for the page: the worker registry, every health record, the runs
    in progress and the change index in one pipeline, then the records in a second.

    Change records (which hold patches up to 64 KiB) are read when new, then again every
    ``changes_refresh`` seconds only while pending (another process may apply them);
    applied and discarded ones never change again. One FleetView serves every viewer.
    """

    def __init__(
        self, client: RedisLike, *, changes_refresh: float = 5.0, max_changes: int = 500
    ) -> None:
        self.client = client
        self.changes_refresh = changes_refresh
        self.max_changes = max_changes
        #: change id -> its record (None: expired, though still in the index)
        self._changes: dict[str, Changes | None] = {}
        self._fetched: dict[str, float] = {}
        self._lock = threading.Lock()

    def refresh_changes(self) -> None:
        """Read every pending change record again at the next read (after an action)."""
        with self._lock:
            self._fetched.clear()

    def read(self) -> dict[str, Any]:
        """Instances, sessions, runs, pending changes and the model gateways' figures,
        as the page's JSON."""
        pipe = self.client.pipeline(transaction=False)
        ask_registry(pipe)
        pipe.zremrangebyscore(RUNS, "-inf", f"({time.time()}")
        pipe.zrange(RUNS, 0, -1)
        pipe.zrange(CHANGES_INDEX, -self.max_changes, -1)
        _, workers, _, runs, change_ids = pipe.execute()
        workers = worker_names(workers)
        runs = [text(r) for r in runs]
        wanted = self._changes_to_read([text(c) for c in change_ids])
        pipe = self.client.pipeline(transaction=False)
        if workers:
            pipe.mget([health_key(w) for w in workers])
        for run in runs:
            pipe.hgetall(run_key(run))
        if wanted:
            pipe.mget([change_key(c) for c in wanted])
        replies = list(pipe.execute()) if workers or runs or wanted else []
        raw_health = replies.pop(0) if workers else []
        raw_changes = replies.pop() if wanted else []
        records = sorted(parse_health(raw_health), key=lambda r: natural(r.worker))
        self._store_changes(wanted, raw_changes)
        with self._lock:
            pending = [c for c in self._changes.values() if c and c.state in _TO_REVIEW]
        return {
            "instances": [instance_row(r) for r in records],
            "sessions": session_rows(records),
            "runs": sorted(
                (row for raw in replies if (row := run_row(raw)) is not None),
                key=lambda row: row["started"],
            ),
            "changes": [change_row(c) for c in sorted(pending, key=lambda c: c.created_at)],
            "gateways": [
                {"upstream": name, **figures}
                for name, figures in upstream_stats(self.client).items()
            ],
        }

    def _changes_to_read(self, ids: list[str]) -> list[str]:
        """The change records to read now: new ones, and pending ones due a refresh."""
        due = time.monotonic() - self.changes_refresh
        with self._lock:
            live = set(ids)
            for gone in [c for c in self._changes if c not in live]:
                del self._changes[gone]
                self._fetched.pop(gone, None)
            return [c for c in ids if c not in self._changes or self._due(c, due)]

    def _due(self, change: str, due: float) -> bool:
        record = self._changes[change]
        final = record is not None and record.state not in _TO_REVIEW
        return not final and self._fetched.get(change, 0.0) < due

    def _store_changes(self, ids: list[str], raws: list[Any]) -> None:
        fetched = time.monotonic()
        with self._lock:
            for change, raw in zip(ids, raws, strict=True):
                self._fetched[change] = fetched
                if raw is None:
                    self._changes[change] = None
                    continue
                try:
                    self._changes[change] = Changes.model_validate_json(raw)
                except (ValueError, ValidationError) as exc:
                    log.warning("change %s: unreadable record: %s", change, exc)
                    self._changes[change] = None
