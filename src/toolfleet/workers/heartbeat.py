"""Publishes the worker's health record: every interval and on every state change."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from toolfleet.health import forget_health, write_health
from toolfleet.keys import RedisLike
from toolfleet.models import InstanceHealth

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """A thread writing ``record()`` to Redis with TTL ``3 * interval``.

    :meth:`notify` asks for an early write, made ``debounce`` seconds later and only if
    ``state()`` (what the record says that matters, e.g. state and session) then differs
    from what was last written: a prompt that goes busy and back to
    ready within that time costs no write. So Redis sees at most one write per state
    change and one per interval, and fast prompts add no Redis traffic at all.

    ``free(state)`` says whether a state leaves the instance free for a session: the
    write that first shows it free also wakes a producer waiting for one.
    """

    def __init__(
        self,
        client: RedisLike,
        record: Callable[[], InstanceHealth],
        interval: float,
        debounce: float = 0.05,
        state: Callable[[], object] | None = None,
        free: Callable[[object], bool] | None = None,
    ) -> None:
        self.client = client
        self.record = record
        self.state = state or (lambda: record().state)
        self.free = free or (lambda _state: False)
        self.interval = interval
        self.debounce = debounce
        self.writes = 0
        self._written_state: object = None
        self._wake = threading.Event()
        self._urgent = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self.beat()
        self._thread = threading.Thread(target=self._run, name="toolfleet-heartbeat", daemon=True)
        self._thread.start()

    def notify(self, urgent: bool = False) -> None:
        """A state changed: write soon (from any thread); ``urgent``: without waiting for
        the debounce (an instance back from a restart or a reset, which producers
        waiting for a session are looking for)."""
        self._urgent = self._urgent or urgent
        self._wake.set()

    def beat(self) -> None:
        """Write the record now."""
        try:
            state = self.state()
            was_free = self._written_state is not None and self.free(self._written_state)
            became_free = self.free(state) and not was_free
            write_health(self.client, self.record(), ttl=3 * self.interval, free=became_free)
            self._written_state = state
            self.writes += 1
        except Exception as exc:  # Redis down: keep beating, the next write may work
            log.warning("heartbeat write failed: %s", exc)

    def stop(self, final: InstanceHealth | None = None) -> None:
        """Stop beating; write ``final`` (e.g. state ``stopping``) or delete the record."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        try:
            if final is not None:
                write_health(self.client, final, ttl=3 * self.interval)
            else:
                record = self.record()
                forget_health(self.client, record.worker, record.profile)
        except Exception as exc:
            log.warning("final heartbeat write failed: %s", exc)

    def _run(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stop.is_set():
            woken = self._wake.wait(max(0.0, due - time.monotonic()))
            if woken:
                if not self._urgent:
                    self._stop.wait(self.debounce)
                self._urgent = False
                self._wake.clear()
            if self._stop.is_set():
                break
            if time.monotonic() >= due:
                self.beat()
                due = time.monotonic() + self.interval
            elif self.state() != self._written_state:
                self.beat()
