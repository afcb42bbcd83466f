"""The exporter's metrics without Redis: a snapshot's families, task events, the dashboard."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from toolfleet.cli import cli
from toolfleet.errors import RedisUnavailable
from toolfleet.metrics import FleetSnapshot, PromptMetrics, SnapshotCollector
from toolfleet.models import STATES, InstanceHealth, Usage

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "toolfleet.json"
NOW = 1_800_000_000.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# ---- what a dashboard queries -------------------------------------------------------

_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip


def expr_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, label matchers, ranges,
    grouping labels and strings left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for found in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        word, call = found.groups()
        if not call and word.lower() not in _PROMQL_WORDS:
            names.add(word)
    return names


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    for var in data["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(re.sub(r"^label_values\(([^,]+),.*\)$", r"\1", var["definition"]))
    return exprs


def dashboard_metric_names() -> set[str]:
    """Every metric name the Grafana dashboard queries (sample names: ``_bucket`` ...)."""
    return set().union(*(expr_metric_names(e) for e in dashboard_exprs()))


def served_names(text: str) -> set[str]:
    """Every sample name in a Prometheus text exposition."""
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def value(found: Samples, metric: str, /, **labels: str) -> float | None:
    return found.get((metric, frozenset(labels.items())))


def test_the_expression_parser_finds_metric_names_and_nothing_else():
    expr = (
        "histogram_quantile(0.95, sum by (le, profile) (rate(celery_task_runtime_bucket"
        '{name="toolfleet.prompt", profile=~"$profile"}[$__rate_interval]))) * 3600'
        " + on (profile) group_left toolfleet_workers offset 5m"
    )
    assert expr_metric_names(expr) == {"celery_task_runtime_bucket", "toolfleet_workers"}
    assert expr_metric_names("min(toolfleet_up)") == {"toolfleet_up"}


# ---- a snapshot's families ----------------------------------------------------------


def record(worker: str, profile: str, state: str = "ready", **fields: object) -> InstanceHealth:
    host_queues = [f"toolfleet.{profile}", f"{worker}.dq2"]
    base: dict[str, object] = {
        "worker": worker,
        "profile": profile,
        "state": state,
        "worker_pid": 1,
        "generation": 1,
        "prompts_served": 0,
        "started_at": NOW - 100,
        "updated_at": NOW - 1,
        "queues": host_queues,
        "version": "9.9",
    }
    return InstanceHealth.model_validate({**base, **fields})


SNAPSHOT = FleetSnapshot(
    records=[
        record(
            "w1@h",
            "python",
            generation=3,
            restarts=2,
            prompts_served=5,
            last_latency_ms=120.0,
            p95_latency_ms=300.0,
            rss_bytes=4096,
            usage_total=Usage(sent=10, received=20, cost=0.5),
        ),
        record("w2@h", "python", "busy", busy_since=NOW - 3, session="s1", prompt_id="p"),
        record("w3@h", "bash", "failed"),
    ],
    profiles=frozenset({"python", "bash", "sqlite3"}),
    queue_lengths={"toolfleet.python": 4, "w1@h.dq2": 2, "w2@h.dq2": 1, "toolfleet.sqlite3": 7},
    unacked=3,
    oldest_unacked=NOW - 42,
    taken_at=NOW,
)


def scrape(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def snapshot_registry(snap: FleetSnapshot = SNAPSHOT) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snap))
    return registry


def test_instances_have_one_state_and_their_figures_in_base_units():
    found = samples(scrape(snapshot_registry()))
    for worker, state in (("w1@h", "ready"), ("w2@h", "busy"), ("w3@h", "failed")):
        profile = "bash" if worker == "w3@h" else "python"
        key = {"worker": worker, "profile": profile}
        states = {s: value(found, "toolfleet_instance_state", state=s, **key) for s in STATES}
        assert states == {s: (1.0 if s == state else 0.0) for s in STATES}
    w1 = {"worker": "w1@h", "profile": "python"}
    assert value(found, "toolfleet_instance_generation", **w1) == 3
    assert value(found, "toolfleet_instance_restarts_total", **w1) == 2
    assert value(found, "toolfleet_instance_prompts_served_total", **w1) == 5
    assert value(found, "toolfleet_instance_last_latency_seconds", **w1) == 0.12
    assert value(found, "toolfleet_instance_latency_seconds", quantile="0.95", **w1) == 0.3
    assert value(found, "toolfleet_instance_latency_seconds", quantile="0.5", **w1) is None
    assert value(found, "toolfleet_instance_rss_bytes", **w1) == 4096
    assert value(found, "toolfleet_instance_input_tokens_total", **w1) == 10
    assert value(found, "toolfleet_instance_output_tokens_total", **w1) == 20
    assert value(found, "toolfleet_instance_cost_total", **w1) == 0.5
    assert value(found, "toolfleet_instance_busy_seconds", **w1) == 0
    assert value(found, "toolfleet_instance_heartbeat_age_seconds", **w1) == 1
    assert value(found, "toolfleet_instance_start_time_seconds", **w1) == NOW - 100
    assert value(found, "toolfleet_instance_info", version="9.9", **w1) == 1
    w2 = {"worker": "w2@h", "profile": "python"}
    assert value(found, "toolfleet_instance_busy_seconds", **w2) == 3
    assert value(found, "toolfleet_instance_leased", **w2) == 1
    assert value(found, "toolfleet_instance_leased", **w1) == 0
    # what a record does not know is left out, not served as 0
    w3 = {"worker": "w3@h", "profile": "bash"}
    for name in ("rss_bytes", "last_latency_seconds", "cost_total", "input_tokens_total"):
        assert value(found, f"toolfleet_instance_{name}", **w3) is None, name
        assert value(found, f"toolfleet_instance_{name}", **w2) is None, name


def test_queues_count_per_profile_shared_and_direct_with_workers_and_leases():
    found = samples(scrape(snapshot_registry()))
    assert value(found, "celery_queue_length", queue_name="toolfleet.python") == 4
    assert value(found, "celery_queue_length", queue_name="w1@h.dq2") == 2
    assert value(found, "celery_queue_length", queue_name="toolfleet.sqlite3") == 7
    assert value(found, "celery_active_worker_count", queue_name="toolfleet.python") == 2
    assert value(found, "celery_active_worker_count", queue_name="toolfleet.sqlite3") == 0
    assert value(found, "toolfleet_queue_length", profile="python", kind="shared") == 4
    assert value(found, "toolfleet_queue_length", profile="python", kind="direct") == 3
    assert value(found, "toolfleet_queue_length", profile="sqlite3", kind="shared") == 7
    assert value(found, "toolfleet_queue_length", profile="bash", kind="shared") == 0
    assert value(found, "toolfleet_workers", profile="python") == 2
    assert value(found, "toolfleet_workers", profile="sqlite3") == 0
    assert value(found, "toolfleet_leases", profile="python") == 1
    assert value(found, "toolfleet_leases", profile="bash") == 0
    assert value(found, "toolfleet_unacked_prompts") == 3
    assert value(found, "toolfleet_unacked_oldest_age_seconds") == 42
    assert value(found, "toolfleet_up") == 1


def test_no_unacked_message_is_an_age_of_zero():
    snap = FleetSnapshot([], frozenset({"python"}), {}, 0, None, NOW)
    found = samples(scrape(snapshot_registry(snap)))
    assert value(found, "toolfleet_unacked_oldest_age_seconds") == 0
    assert value(found, "toolfleet_queue_length", profile="python", kind="shared") == 0


def test_a_scrape_without_redis_says_toolfleet_up_0_and_nothing_else():
    def unreachable() -> FleetSnapshot:
        raise RedisUnavailable("cannot use Redis at redis://x: refused")

    registry = CollectorRegistry()
    registry.register(SnapshotCollector(unreachable))
    assert served_names(scrape(registry)) == {"toolfleet_up"}
    assert value(samples(scrape(registry)), "toolfleet_up") == 0


# ---- task events --------------------------------------------------------------------


def event(kind: str, uuid: str, hostname: str, at: float, **fields: object) -> dict[str, object]:
    """A Celery event as the receiver hands it over (localized, clocked)."""
    return {
        "type": kind, "uuid": uuid, "hostname": hostname, "timestamp": at,
        "local_received": at, "clock": int(at * 10), **fields,
    }  # fmt: skip


def run_events(metrics: PromptMetrics) -> None:
    queue = "toolfleet.python"
    sent = [event("task-sent", "a", "producer@h", NOW, name="toolfleet.prompt", queue=queue)]
    succeeded = [
        event("task-received", "a", "w1@h", NOW + 1, name="toolfleet.prompt"),
        event("task-started", "a", "w1@h", NOW + 1.1),
        event("task-succeeded", "a", "w1@h", NOW + 1.4, runtime=0.3),
    ]
    failed = [  # its task-sent was not seen: queue unknown
        event("task-received", "b", "w3@h", NOW + 2, name="toolfleet.prompt"),
        event("task-started", "b", "w3@h", NOW + 2),
        event("task-failed", "b", "w3@h", NOW + 4.5, exception="ToolCrashed('w3@h died')"),
    ]
    stranger = [  # a worker no health record names
        event("task-received", "c", "gone@elsewhere", NOW + 5, name="toolfleet.prompt"),
        event("task-succeeded", "c", "gone@elsewhere", NOW + 6, runtime=20.0),
    ]
    for e in [*sent, *succeeded, *failed, *stranger]:
        metrics.on_event(e)


def labels(hostname: str, queue_name: str, profile: str) -> dict[str, str]:
    return {"name": "toolfleet.prompt", "hostname": hostname, "queue_name": queue_name,
            "profile": profile}  # fmt: skip


def test_task_events_feed_runtime_and_outcomes_per_profile():
    registry = CollectorRegistry()
    profiles = {"w1@h": "python", "w3@h": "bash"}
    metrics = PromptMetrics(registry, lambda node: profiles.get(node, "unknown"))
    run_events(metrics)
    found = samples(scrape(registry))
    ok = labels("h", "toolfleet.python", "python")
    assert value(found, "celery_task_runtime_count", **ok) == 1
    assert value(found, "celery_task_runtime_sum", **ok) == 0.3
    assert value(found, "celery_task_runtime_bucket", le="0.25", **ok) == 0
    assert value(found, "celery_task_runtime_bucket", le="0.5", **ok) == 1
    assert value(found, "celery_task_succeeded_total", **ok) == 1
    bad = labels("h", "unknown", "bash")
    assert value(found, "celery_task_runtime_count", **bad) == 1
    assert value(found, "celery_task_runtime_sum", **bad) == 2.5  # started -> failed
    assert value(found, "celery_task_failed_total", exception="ToolCrashed", **bad) == 1
    stranger = labels("elsewhere", "unknown", "unknown")
    assert value(found, "celery_task_runtime_sum", **stranger) == 20
    assert value(found, "toolfleet_exporter_events_total") == 9


# ---- the dashboard ------------------------------------------------------------------


def test_every_metric_the_dashboard_queries_is_served():
    registry = snapshot_registry()
    run_events(PromptMetrics(registry, lambda node: "python"))
    wanted = dashboard_metric_names()
    assert {"toolfleet_instance_state", "celery_task_runtime_bucket", "toolfleet_queue_length",
            "toolfleet_unacked_prompts", "toolfleet_leases", "toolfleet_instance_rss_bytes",
            "toolfleet_instance_restarts_total"} <= wanted  # fmt: skip
    assert wanted - served_names(scrape(registry)) == set()


def test_the_dashboard_is_grafana_json_with_a_datasource_and_profile_variable():
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    names = [v["name"] for v in data["templating"]["list"]]
    assert names == ["datasource", "profile"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]


# ---- the command --------------------------------------------------------------------


def test_without_prometheus_client_the_command_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    result = CliRunner().invoke(cli, ["exporter", "--port", "0"])
    assert result.exit_code == 1
    assert "pip install 'toolfleet[exporter]'" in result.output


def test_producers_and_the_command_line_do_not_import_prometheus_client():
    code = (
        "import sys, toolfleet, toolfleet.cli, toolfleet.client.fleet;"
        "print('prometheus_client' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("option", ["--port", "--address", "--profile"])
def test_the_command_has_its_options(option):
    result = CliRunner().invoke(cli, ["exporter", "--help"])
    assert result.exit_code == 0 and option in result.output
    assert "default: 9808" in result.output


def test_the_model_gateways_figures_are_served_per_upstream():
    from dataclasses import replace

    from toolfleet.gateway.stats import COUNTERS

    figures = dict.fromkeys(COUNTERS, 0.0) | {
        "requests": 61.0,
        "throttled": 3.0,
        "cost": 0.25,
        "waiting": 4,
        "inflight": 2,
        "ceiling": 1.5,
        "quota_exhausted": 1.0,
    }
    found = samples(scrape(snapshot_registry(replace(SNAPSHOT, upstreams={"openai": figures}))))
    up = {"upstream": "openai"}
    assert value(found, "toolfleet_gateway_requests_total", **up) == 61
    assert value(found, "toolfleet_gateway_throttled_total", **up) == 3
    assert value(found, "toolfleet_gateway_cost_total", **up) == 0.25
    assert value(found, "toolfleet_gateway_waiting", **up) == 4
    assert value(found, "toolfleet_gateway_ceiling", **up) == 1.5
    assert value(found, "toolfleet_gateway_quota_exhausted", **up) == 1
