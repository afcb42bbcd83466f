"""Prometheus metrics of a fleet: families from a snapshot of Redis, and task-event metrics."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery.events.state import State
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from toolfleet.broker.app import shared_queue
from toolfleet.errors import RedisUnavailable
from toolfleet.models import STATES, InstanceHealth

__all__ = ["BUCKETS", "FleetSnapshot", "PromptMetrics", "SnapshotCollector", "fleet_families"]

log = logging.getLogger(__name__)

#: prompt durations (s): a REPL answers in milliseconds, an agent in minutes
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

_INSTANCE = ("worker", "profile")


@dataclass(frozen=True)
class FleetSnapshot:
    """What one scrape read from Redis."""

    records: list[InstanceHealth]
    #: every profile whose shared queue was measured (with or without workers)
    profiles: frozenset[str]
    #: queue name -> messages waiting in it, every priority sub-list summed
    queue_lengths: Mapping[str, int]
    #: messages delivered to a worker and not acknowledged yet (kombu's ``unacked`` hash)
    unacked: int
    #: Unix time the oldest unacknowledged message was delivered (None: there is none)
    oldest_unacked: float | None
    taken_at: float
    #: the model gateways' figures by upstream (see toolfleet.gateway.stats)
    upstreams: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = _INSTANCE) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


#: toolfleet_instance_<suffix>: (suffix, counter?, help), the values from _instance_values
_INSTANCE_METRICS = (
    ("generation", False, "Tool instance generation (1 + restarts)."),
    ("restarts", True, "Restarts of the tool."),
    ("prompts_served", True, "Prompts the worker answered."),
    ("last_latency_seconds", False, "Duration of the last prompt."),
    ("rss_bytes", False, "Resident memory of the tool process."),
    ("busy_seconds", False, "Age of the running prompt (0 while idle)."),
    ("leased", False, "1 while a session holds the instance."),
    ("start_time_seconds", False, "Unix time the tool instance started."),
    ("heartbeat_age_seconds", False, "Age of the health record."),
    ("input_tokens", True, "Tokens sent to the model, as the tool reported."),
    ("output_tokens", True, "Tokens received from the model, as the tool reported."),
    ("cost", True, "Money spent, as the tool reported (in its currency)."),
)


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000


def _instance_values(r: InstanceHealth, now: float) -> dict[str, float | None]:
    """The value of each of :data:`_INSTANCE_METRICS` for ``r`` (None: not known)."""
    usage = r.usage_total
    return {
        "generation": r.generation,
        "restarts": r.restarts,
        "prompts_served": r.prompts_served,
        "last_latency_seconds": _seconds(r.last_latency_ms),
        "rss_bytes": r.rss_bytes,
        "busy_seconds": 0.0 if r.busy_since is None else max(0.0, now - r.busy_since),
        "leased": 0.0 if r.session is None else 1.0,
        "start_time_seconds": r.started_at,
        "heartbeat_age_seconds": max(0.0, now - r.updated_at),
        "input_tokens": None if usage is None else usage.sent,
        "output_tokens": None if usage is None else usage.received,
        "cost": None if usage is None else usage.cost,
    }


def _instance_families(records: list[InstanceHealth], now: float) -> list[Metric]:
    state = _gauge(
        "toolfleet_instance_state", "1 for the instance's state, else 0.", (*_INSTANCE, "state")
    )
    info = _gauge("toolfleet_instance_info", "The instance's version.", (*_INSTANCE, "version"))
    latency = _gauge(
        "toolfleet_instance_latency_seconds",
        "Prompt duration quantiles over the worker's recent prompts.",
        (*_INSTANCE, "quantile"),
    )
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        suffix: (CounterMetricFamily if counter else GaugeMetricFamily)(
            f"toolfleet_instance_{suffix}", doc, labels=list(_INSTANCE)
        )
        for suffix, counter, doc in _INSTANCE_METRICS
    }
    for r in records:
        key = [r.worker, r.profile]
        for name in STATES:
            state.add_metric([*key, name], 1.0 if r.state == name else 0.0)
        info.add_metric([*key, r.version], 1.0)
        for quantile, ms in (("0.5", r.p50_latency_ms), ("0.95", r.p95_latency_ms)):
            if ms is not None:
                latency.add_metric([*key, quantile], ms / 1000)
        for suffix, value in _instance_values(r, now).items():
            if value is not None:
                families[suffix].add_metric(key, value)
    return [state, info, latency, *families.values()]


#: (name, labels, help) of the gauges of queues and profiles
_FLEET_GAUGES = (
    ("celery_queue_length", ("queue_name",), "Messages waiting in the queue, every priority."),
    ("celery_active_worker_count", ("queue_name",), "Live workers consuming the queue."),
    ("toolfleet_queue_length", ("profile", "kind"), "Prompts waiting in the profile's shared"
     " queue (kind shared) or its live workers' direct queues (kind direct)."),
    ("toolfleet_workers", ("profile",), "Workers of the profile with a live health record."),
    ("toolfleet_leases", ("profile",), "Instances of the profile held by a session."),
    ("toolfleet_unacked_prompts", (), "Prompts delivered to workers, not acknowledged yet."),
    ("toolfleet_unacked_oldest_age_seconds", (), "Age of the oldest unacknowledged delivery."),
)  # fmt: skip


def _queue_families(snap: FleetSnapshot) -> list[Metric]:
    g = {name: _gauge(name, doc, labels) for name, labels, doc in _FLEET_GAUGES}
    for name, count in sorted(snap.queue_lengths.items()):
        g["celery_queue_length"].add_metric([name], count)
        consumers = sum(1 for r in snap.records if name in r.queues)
        g["celery_active_worker_count"].add_metric([name], consumers)
    for profile in sorted(snap.profiles):
        mine = [r for r in snap.records if r.profile == profile]
        shared = shared_queue(profile)
        direct = {q for r in mine for q in r.queues} - {shared}
        per_profile = g["toolfleet_queue_length"]
        per_profile.add_metric([profile, "shared"], snap.queue_lengths.get(shared, 0))
        per_profile.add_metric(
            [profile, "direct"], sum(snap.queue_lengths.get(q, 0) for q in direct)
        )
        g["toolfleet_workers"].add_metric([profile], len(mine))
        g["toolfleet_leases"].add_metric([profile], sum(1 for r in mine if r.session is not None))
    g["toolfleet_unacked_prompts"].add_metric([], snap.unacked)
    since = snap.oldest_unacked
    age = 0.0 if since is None else max(0.0, snap.taken_at - since)
    g["toolfleet_unacked_oldest_age_seconds"].add_metric([], age)
    return list(g.values())


#: toolfleet_gateway_<suffix>{upstream}: (figure of upstream_stats, counter?, help)
_GATEWAY_METRICS = (
    ("requests", True, "Model calls the gateways sent upstream (retries included)."),
    ("waited", True, "Model calls that waited for their turn under the fleet's limits."),
    ("retries", True, "Model calls sent again after a slow-down answer or a lost link."),
    ("throttled", True, "429/529/503 answers of the provider, retried, hidden from agents."),
    ("quota_refusals", True, "Times the provider said the quota is exhausted."),
    ("sent", True, "Tokens sent to the model, as the provider counted them."),
    ("received", True, "Tokens received from the model, as the provider counted them."),
    ("cost", True, "Money spent, priced from the upstream's price table."),
    ("waiting", False, "Model calls waiting for their turn now."),
    ("inflight", False, "Model calls in flight now."),
    ("ceiling", False, "The concurrency ceiling after 429s (AIMD; 0: none)."),
    ("quota_exhausted", False, "1 while new work on the upstream is refused for its quota."),
)


def _gateway_families(snap: FleetSnapshot) -> list[Metric]:
    families: list[Metric] = []
    for figure, counter, doc in _GATEWAY_METRICS:
        name = f"toolfleet_gateway_{figure}"
        family = (CounterMetricFamily if counter else GaugeMetricFamily)(
            name, doc, labels=["upstream"]
        )
        for upstream, figures in sorted(snap.upstreams.items()):
            family.add_metric([upstream], float(figures.get(figure, 0.0)))
        families.append(family)
    return families


def fleet_families(snap: FleetSnapshot) -> list[Metric]:
    """The metric families of one snapshot."""
    return [
        *_instance_families(snap.records, snap.taken_at),
        *_queue_families(snap),
        *_gateway_families(snap),
    ]


class SnapshotCollector(Collector):
    """A registry collector reading a fresh snapshot at every scrape; ``toolfleet_up`` is 0
    (and nothing else is served) while Redis cannot be read."""

    def __init__(self, read: Callable[[], FleetSnapshot]) -> None:
        self.read = read

    def describe(self) -> list[Metric]:
        return []  # no scrape at registration

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = _gauge("toolfleet_up", "1 when the last scrape could read the fleet's Redis.", ())
        try:
            snap = self.read()
        except RedisUnavailable as exc:
            log.warning("scrape failed: %s", exc.message)
            up.add_metric([], 0.0)
            yield up
            return
        yield from fleet_families(snap)
        up.add_metric([], 1.0)
        yield up
        took = _gauge(
            "toolfleet_scrape_duration_seconds", "Time the scrape took to read Redis.", ()
        )
        took.add_metric([], time.perf_counter() - started)
        yield took


_EXCEPTION = re.compile(r"^(\w+)\(")


class PromptMetrics:
    """Prompt durations and outcomes from Celery task events, with celery-exporter's names
    and labels plus ``profile`` (``hostname`` is the host part of the node name, as there).

    ``profile_of`` maps a worker's node name to its profile. A failed prompt's duration is
    the time from its task-started to its task-failed event (task-failed has no runtime).
    """

    def __init__(self, registry: CollectorRegistry, profile_of: Callable[[str], str]) -> None:
        labels = ["name", "hostname", "queue_name", "profile"]
        self.profile_of = profile_of
        self.state = State(max_tasks_in_memory=10000)
        self.runtime = Histogram(
            "celery_task_runtime",
            "Prompt (task) duration in seconds, succeeded and failed.",
            labels,
            buckets=BUCKETS,
            registry=registry,
        )
        self.succeeded = Counter(
            "celery_task_succeeded", "Tasks that succeeded.", labels, registry=registry
        )
        self.failed = Counter(
            "celery_task_failed",
            "Tasks that failed.",
            ["name", "hostname", "exception", "queue_name", "profile"],
            registry=registry,
        )
        self.events = Counter(
            "toolfleet_exporter_events", "Celery events the exporter received.", registry=registry
        )

    def on_event(self, event: dict[str, Any]) -> None:
        """Handle one Celery event (as an ``EventReceiver`` hands it over)."""
        self.events.inc()
        self.state.event(event)
        kind = event.get("type")
        if kind not in ("task-succeeded", "task-failed"):
            return
        task = self.state.tasks.get(event["uuid"])
        if task is None:
            return
        node = str(event.get("hostname") or "")
        labels = {
            "name": str(task.name or "unknown"),
            "hostname": node.rpartition("@")[2],
            "queue_name": str(getattr(task, "queue", None) or "unknown"),
            "profile": self.profile_of(node),
        }
        if kind == "task-succeeded":
            self.succeeded.labels(**labels).inc()
            runtime = event.get("runtime")
        else:
            found = _EXCEPTION.match(str(task.exception or ""))
            exception = found[1] if found else "UnknownException"
            self.failed.labels(exception=exception, **labels).inc()
            runtime = None if task.started is None else task.failed - task.started
        if runtime is not None and runtime >= 0:
            self.runtime.labels(**labels).observe(float(runtime))
