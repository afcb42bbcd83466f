"""``toolfleet exporter`` as a real process, scraped over HTTP, on real workers and Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests

from toolfleet import Settings
from toolfleet.broker import PROMPT_TASK, shared_queue
from toolfleet.cli.local import EmbeddedRedis, free_port
from toolfleet.errors import ToolCrashed
from toolfleet.models import STATES

from ..helpers import eventually
from ..unit.test_exporter import Samples, dashboard_metric_names, samples, served_names, value
from .conftest import _fresh_settings
from .procs import Workers, env_for

PROFILES = r"""
[profiles.echo-cost]
extends = "echo"
usage_pattern = 'spent (?P<sent>\d+) tokens, \$(?P<cost>[\d.]+)'

[profiles.idle]
extends = "echo"
"""

Scrape = Callable[[], Samples]


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path) -> Settings:
    """Settings whose profiles file adds a priced profile and one no worker runs."""
    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES, encoding="utf-8")
    return _fresh_settings(redis_server, profiles=path)


@pytest.fixture
def exporter(settings: Settings, tmp_path: Path) -> Iterator[tuple[Scrape, Callable[[], str]]]:
    """A running ``toolfleet exporter``: (parsed scrape, raw scrape); stopped afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "exporter.log"
    argv = [sys.executable, "-m", "toolfleet", "exporter", f"--port={port}", "--address=127.0.0.1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            env=env_for(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def text() -> str:
        assert proc.poll() is None, log.read_text()
        response = requests.get(url, timeout=5)
        response.raise_for_status()
        return response.text

    def answers() -> bool:
        try:
            return value(samples(text()), "toolfleet_up") == 1
        except requests.ConnectionError:
            return False

    try:
        eventually(answers, 20, f"the exporter at {url}")
        yield (lambda: samples(text())), text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def by_worker(found: Samples, metric: str) -> dict[str, float]:
    return {dict(k)["worker"]: v for (name, k), v in found.items() if name == metric}


def test_instances_queues_every_priority_unacked_and_usage(
    workers: Workers, exporter: tuple[Scrape, Callable[[], str]]
) -> None:
    scrape, _ = exporter
    ready = workers.wait_ready(workers.start("echo-cost", 2))
    nodes = {name: record.worker for name, record in ready.items()}

    def both_ready() -> Samples | None:
        found = scrape()
        return found if by_worker(found, "toolfleet_instance_generation") == {
            nodes["echo-cost1"]: 1, nodes["echo-cost2"]: 1
        } else None  # fmt: skip

    found = eventually(both_ready, 10, "both instances in the scrape")
    for node in nodes.values():
        states = {
            s: value(found, "toolfleet_instance_state", worker=node, profile="echo-cost", state=s)
            for s in STATES
        }
        assert states == {s: float(s == "ready") for s in STATES}
    assert value(found, "toolfleet_workers", profile="echo-cost") == 2
    assert value(found, "toolfleet_workers", profile="idle") == 0
    assert value(found, "celery_active_worker_count", queue_name="toolfleet.echo-cost") == 2

    # a profile without workers, prompts at four priority levels: each level is a list
    fleet = workers.fleet
    for priority in (0, 4, 4, 7, 9, 9, 9):
        fleet.app.send_task(
            PROMPT_TASK, kwargs={"text": "x"}, queue=shared_queue("idle"), priority=priority
        )
    with redis.Redis.from_url(workers.settings.broker_url) as client:
        names = ["toolfleet.idle", *(f"toolfleet.idle\x06\x16{step}" for step in (3, 6, 9))]
        lists = [client.llen(name) for name in names]
    assert lists == [1, 2, 1, 3], "kombu's priority sub-lists changed"

    def queued() -> Samples | None:
        f = scrape()
        return f if value(f, "celery_queue_length", queue_name="toolfleet.idle") == 7 else None

    found = eventually(queued, 10, "7 prompts queued for idle")
    assert value(found, "toolfleet_queue_length", profile="idle", kind="shared") == 7

    # one instance busy for long, a second prompt for it waiting in its direct queue
    node = nodes["echo-cost1"]
    long = fleet.submit(":sleep 60", "echo-cost", worker=node)
    waiting = fleet.submit("spent 100 tokens, $0.4", "echo-cost", worker=node)

    def busy_and_waiting() -> Samples | None:
        f = scrape()
        key = {"worker": node, "profile": "echo-cost"}
        ok = (
            value(f, "toolfleet_instance_state", state="busy", **key) == 1
            and (value(f, "toolfleet_instance_busy_seconds", **key) or 0) > 0
            and value(f, "toolfleet_unacked_prompts") == 1
            and value(f, "celery_queue_length", queue_name=f"{node}.dq2") == 1
            and value(f, "toolfleet_queue_length", profile="echo-cost", kind="direct") == 1
        )
        return f if ok else None

    eventually(busy_and_waiting, 15, "a busy instance, one unacked and one waiting prompt")
    fleet.cancel(long.id)
    assert waiting.get(timeout=30).output == "spent 100 tokens, $0.4"

    def settled() -> Samples | None:
        f = scrape()
        key = {"worker": node, "profile": "echo-cost"}
        ok = (
            value(f, "toolfleet_unacked_prompts") == 0
            and value(f, "celery_queue_length", queue_name=f"{node}.dq2") == 0
            and value(f, "toolfleet_instance_cost_total", **key) == 0.4
            and value(f, "toolfleet_instance_input_tokens_total", **key) == 100
            and value(f, "toolfleet_instance_busy_seconds", **key) == 0
        )
        return f if ok else None

    found = eventually(settled, 15, "the prompts done and their usage summed")
    other = {"worker": nodes["echo-cost2"], "profile": "echo-cost"}
    assert value(found, "toolfleet_instance_prompts_served_total", **other) == 0
    assert value(found, "toolfleet_instance_cost_total", **other) is None  # nothing reported
    assert value(found, "toolfleet_queue_length", profile="idle", kind="shared") == 7


def test_prompt_durations_per_profile_and_the_dashboard(
    workers: Workers, exporter: tuple[Scrape, Callable[[], str]]
) -> None:
    scrape, text = exporter
    workers.wait_ready(workers.start("echo-cost"))
    # the exporter listens to events once it has received one (worker heartbeats)
    eventually(lambda: (value(scrape(), "toolfleet_exporter_events_total") or 0) > 0, 15, "events")

    def runtime(kind: str, **labels: str) -> float:
        return sum(
            v
            for (name, key), v in scrape().items()
            if name == f"celery_task_runtime_{kind}"
            and dict(key)["profile"] == "echo-cost"
            and all(dict(key).get(k) == want for k, want in labels.items())
        )

    before = runtime("count")
    handles = [workers.fleet.submit(":sleep 0.2", "echo-cost") for _ in range(3)]
    assert [h.get(timeout=30).output for h in handles] == ["slept 0.2"] * 3
    eventually(lambda: runtime("count") == before + 3, 15, "3 more prompt durations")
    assert runtime("sum") >= 0.6
    assert runtime("bucket", le="0.1") == 0 and runtime("bucket", le="+Inf") == before + 3

    crashing = workers.fleet.submit(":crash", "echo-cost")
    with pytest.raises(ToolCrashed):
        crashing.get(timeout=30)

    def failed() -> float:
        found = scrape()
        return sum(
            v
            for (name, key), v in found.items()
            if name == "celery_task_failed_total" and dict(key)["profile"] == "echo-cost"
        )

    eventually(lambda: failed() == 1, 15, "the crashed prompt counted as failed")
    eventually(lambda: runtime("count") == before + 4, 15, "its duration counted too")
    # once a tool reported usage, every metric the Grafana dashboard queries is served
    priced = workers.fleet.submit("spent 5 tokens, $0.1", "echo-cost").get(timeout=30)
    assert priced.usage is not None and priced.usage.cost == 0.1
    eventually(lambda: "toolfleet_instance_cost_total" in served_names(text()), 10, "usage")
    assert dashboard_metric_names() - served_names(text()) == set()


def test_a_killed_workers_instance_leaves_the_scrape(
    workers: Workers, exporter: tuple[Scrape, Callable[[], str]]
) -> None:
    scrape, _ = exporter
    ready = workers.wait_ready(workers.start("echo-cost", 2))
    killed, kept = ready["echo-cost1"].worker, ready["echo-cost2"].worker
    eventually(
        lambda: set(by_worker(scrape(), "toolfleet_instance_generation")) == {killed, kept},
        10,
        "both instances in the scrape",
    )
    workers.procs["echo-cost1"].send_signal(signal.SIGKILL)

    def gone() -> Samples | None:
        f = scrape()
        return f if set(by_worker(f, "toolfleet_instance_generation")) == {kept} else None

    found = eventually(gone, 15, "the killed worker's instance gone from the scrape")
    assert not any(dict(key).get("worker") == killed for _, key in found)
    assert value(found, "toolfleet_workers", profile="echo-cost") == 1
    assert value(found, "celery_active_worker_count", queue_name="toolfleet.echo-cost") == 1
