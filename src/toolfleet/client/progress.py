"""A bulk run's progress in Redis, for the dashboard: one hash a run, one pipeline a write."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from toolfleet.keys import RUNS, RedisLike, run_key

__all__ = ["RUN_TTL", "RunCounters", "RunProgress"]

log = logging.getLogger(__name__)

#: seconds a run's hash lives after its last write: a producer that dies leaves a run
#: that vanishes from the dashboard this long after its last progress
RUN_TTL = 30.0


class RunCounters(Protocol):
    """What a progress write reads of a run (a ``MapRun``)."""

    total: int
    retried: int
    skipped: list[str]
    stopped: bool
    finished: float | None

    @property
    def elapsed(self) -> float: ...

    @property
    def outstanding(self) -> int: ...


class RunProgress:
    """Publishes a run's counters to ``toolfleet:run:<id>`` (a hash with a TTL) and the
    index ``toolfleet:runs`` (run id -> when its hash expires), at most once every
    ``every`` seconds while it runs, and once when it ends; each write is one pipeline.

    A write that fails (Redis away) is logged and skipped: a run never fails for its
    progress report.
    """

    def __init__(
        self,
        client: RedisLike,
        profile: str | None,
        *,
        run_id: str | None = None,
        every: float = 1.0,
        ttl: float = RUN_TTL,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.profile = profile or "(per item)"
        self.id = run_id or uuid.uuid4().hex[:12]
        self.every = every
        self.ttl = ttl
        self.clock = clock
        self.wall = wall
        self.started = wall()
        #: who runs the map (host and process), shown with it
        self.producer = f"{socket.gethostname()}:{os.getpid()}"
        self.done = 0
        self.failed = 0
        self.writes = 0
        self._last = -math.inf
        self._over = False

    @classmethod
    def of(cls, fleet: object, profile: str | None) -> RunProgress | None:
        """A reporter on ``fleet``'s result backend; None for a fleet without a Celery
        app (a test stub)."""
        app = getattr(fleet, "app", None)
        if app is None:
            return None
        try:
            return cls(app.backend.client, profile)
        except Exception as exc:  # no usable backend: the run goes on unreported
            log.debug("no progress reports: %s", exc)
            return None

    def settled(self, ok: bool, run: RunCounters) -> None:
        """An item's outcome was recorded (``ok`` or failed)."""
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self.tick(run)

    def tick(self, run: RunCounters) -> None:
        """Write if the last write is ``every`` seconds old (cheap to call often)."""
        if self.clock() - self._last >= self.every:
            self.publish(run)

    def finish(self, run: RunCounters) -> None:
        """The run ended: write its last counters (once)."""
        if not self._over:
            self._over = True
            self.publish(run)

    def fields(self, run: RunCounters) -> dict[str, Any]:
        """The hash's fields now."""
        elapsed = max(run.elapsed, 1e-9)
        ended = "stopped" if run.stopped else "finished"
        state = "running" if run.finished is None else ended
        return {
            "id": self.id,
            "profile": self.profile,
            "total": run.total,
            "done": self.done,
            "failed": self.failed,
            "retried": run.retried,
            "skipped": len(run.skipped),
            "outstanding": run.outstanding,
            "rate": round((self.done + self.failed) / elapsed, 3),
            "started": round(self.started, 3),
            "updated": round(self.wall(), 3),
            "state": state,
            "producer": self.producer,
        }

    def publish(self, run: RunCounters) -> None:
        """Write the hash, its TTL and its index entry now (one round trip)."""
        self._last = self.clock()
        now = self.wall()
        key = run_key(self.id)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, mapping=self.fields(run))
            pipe.pexpire(key, max(1, int(self.ttl * 1000)))
            pipe.zadd(RUNS, {self.id: now + self.ttl})
            pipe.zremrangebyscore(RUNS, "-inf", f"({now}")
            pipe.execute()
            self.writes += 1
        except Exception as exc:
            log.warning("run %s: progress not written: %s", self.id, exc)
