"""The fleet's Prometheus exporter: Redis read at each scrape, task events in a thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from toolfleet.broker.app import shared_queue
from toolfleet.broker.internals import broker_depths
from toolfleet.client.fleet import Fleet
from toolfleet.client.unavailable import redis_errors
from toolfleet.errors import ConfigError, RedisUnavailable
from toolfleet.gateway.stats import upstream_stats
from toolfleet.health import read_health
from toolfleet.metrics import FleetSnapshot, PromptMetrics, SnapshotCollector
from toolfleet.models import InstanceHealth
from toolfleet.profiles import load_profiles
from toolfleet.settings import Settings

__all__ = ["EventFollower", "Exporter", "FleetReader"]

log = logging.getLogger(__name__)


class FleetReader:
    """Reads a :class:`FleetSnapshot` in three round trips, whatever Redis holds: the
    health records (the worker registry), then one pipeline to the broker for the length
    of every queue and the messages delivered and not acknowledged (:func:`broker_depths`).

    It remembers the profiles it has seen, so that a profile whose workers are all gone
    still has its queue measured; ``profiles`` are measured from the start.
    """

    def __init__(self, fleet: Fleet, profiles: Iterable[str] = (), min_refresh: float = 1.0):
        self.fleet = fleet
        self.profiles = set(profiles)
        self.min_refresh = min_refresh
        # Celery keeps a result backend per thread: every scrape (a thread each) and the
        # event thread share this one thread-safe client
        self.client: Any = fleet.app.backend.client
        self._connection: Any = fleet.app.connection_for_read()
        self._channel: Any = None
        self._workers: dict[str, str] = {}
        self._refreshed = 0.0
        self._lock = threading.Lock()

    def records(self) -> list[InstanceHealth]:
        """The live health records; the worker -> profile map is updated from them."""
        with redis_errors(self.fleet.settings):
            records = read_health(self.client)
        with self._lock:
            self._workers = {r.worker: r.profile for r in records}
            self._refreshed = time.monotonic()
            self.profiles |= set(self._workers.values())
        return records

    def profile_of(self, worker: str) -> str:
        """``worker``'s profile (its health record read again at most once a
        ``min_refresh`` when it is unknown), or ``unknown``."""
        found = self._workers.get(worker)
        if found is None and time.monotonic() - self._refreshed >= self.min_refresh:
            try:
                self.records()
            except RedisUnavailable as exc:
                log.warning("cannot read health records: %s", exc.message)
                self._refreshed = time.monotonic()
            found = self._workers.get(worker)
        return found or "unknown"

    def _broker_channel(self) -> Any:
        with self._lock:  # scrapes run in threads of their own
            if self._channel is None:
                self._channel = self._connection.channel()
            return self._channel

    def snapshot(self) -> FleetSnapshot:
        """Everything one scrape serves, read now (RedisUnavailable if Redis cannot be)."""
        records = self.records()
        with self._lock:
            profiles = frozenset(self.profiles)
        queues = sorted(
            {shared_queue(p) for p in profiles} | {q for r in records for q in r.queues}
        )
        with redis_errors(self.fleet.settings):
            depths = broker_depths(self._broker_channel(), queues)
            upstreams = upstream_stats(self.client)
        return FleetSnapshot(
            records=records,
            profiles=profiles,
            queue_lengths=depths.queue_lengths,
            unacked=depths.unacked,
            oldest_unacked=depths.oldest_unacked,
            taken_at=time.time(),
            upstreams=upstreams,
        )

    def close(self) -> None:
        self._connection.release()


class EventFollower(threading.Thread):
    """Feeds the fleet's Celery events to ``metrics`` (a receiver in this thread, as
    Flower and celery-exporter run one); reconnects after any error until stopped."""

    def __init__(self, fleet: Fleet, metrics: PromptMetrics, retry: float = 2.0) -> None:
        super().__init__(name="toolfleet-events", daemon=True)
        self.fleet = fleet
        self.metrics = metrics
        self.retry = retry
        self._stopping = threading.Event()
        self._receiver: Any = None

    def run(self) -> None:
        app = self.fleet.app
        while not self._stopping.is_set():
            try:
                with app.connection_for_read() as connection:
                    self._receiver = app.events.Receiver(
                        connection, handlers={"*": self.metrics.on_event}
                    )
                    if self._stopping.is_set():  # stopped while connecting
                        return
                    self._receiver.capture(limit=None, timeout=None, wakeup=True)
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning("task events: %s (reconnecting in %g s)", exc, self.retry)
            self._stopping.wait(self.retry)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop receiving (within about a second) and wait for the thread."""
        self._stopping.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self.is_alive():
            self.join(timeout)


def local_profiles(settings: Settings) -> set[str]:
    """The profiles defined here (built-in and TOOLFLEET_PROFILES); the built-ins alone
    when the profiles file cannot be read (it may be the workers' only)."""
    try:
        return set(load_profiles(settings.profiles))
    except ConfigError as exc:
        log.warning("%s; reporting the queues of the built-in profiles", exc)
        return set(load_profiles(None))


class Exporter:
    """The exporter of one fleet: a registry with the scrape-time collector and the
    task-event metrics, served over HTTP by :meth:`serve`."""

    def __init__(self, settings: Settings | None = None, profiles: Iterable[str] = ()) -> None:
        self.fleet = Fleet(settings)
        self.reader = FleetReader(self.fleet, local_profiles(self.fleet.settings) | set(profiles))
        self.registry = CollectorRegistry()
        self.registry.register(SnapshotCollector(self.reader.snapshot))
        self.prompts = PromptMetrics(self.registry, self.reader.profile_of)
        self.events = EventFollower(self.fleet, self.prompts)
        self._server: Any = None

    def serve(self, port: int = 9808, address: str = "0.0.0.0") -> None:
        """Follow task events and serve ``/metrics`` on ``address:port`` (both in threads);
        OSError if the port cannot be bound."""
        self._server, _ = start_http_server(port, address, registry=self.registry)
        self.events.start()

    def close(self) -> None:
        """Stop serving and following events; release the Redis connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.events.stop()
        self.reader.close()
        self.fleet.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
