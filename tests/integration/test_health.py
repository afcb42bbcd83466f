"""Health records, supervision and remote control on real workers and tools."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from toolfleet import Settings, ToolCrashed
from toolfleet.cli.local import flower_command, free_port

from ..helpers import eventually
from .procs import Workers, env_for, wait_gone

PROFILES_TOML = """
[profiles.echo3]
extends = "echo"
max_prompts = 3

[profiles.flaky]
extends = "echo"
restart_backoff = 0.05
crash_loop_restarts = 3
crash_loop_window = 30
"""


@pytest.fixture
def settings(redis_server, tmp_path: Path) -> Settings:  # type: ignore[no-untyped-def]
    """Settings whose profiles file adds a recycling and a crash-looping profile."""
    from .conftest import _fresh_settings

    path = tmp_path / "profiles.toml"
    path.write_text(PROFILES_TOML, encoding="utf-8")
    return _fresh_settings(redis_server, profiles=path)


def record_of(workers: Workers, name: str):  # type: ignore[no-untyped-def]
    return next((h for h in workers.fleet.status() if h.worker.startswith(name + "@")), None)


def test_status_shows_busy_during_a_long_prompt_then_ready(workers: Workers) -> None:
    workers.wait_ready(workers.start("echo", 2))
    node = workers.node("echo1")
    handle = workers.fleet.submit(":sleep 3", "echo", worker=node)
    busy = eventually(
        lambda: (r := record_of(workers, "echo1")) and r.state == "busy" and r, 5, "busy"
    )
    assert busy.busy_since is not None and busy.busy_since <= time.time()
    assert record_of(workers, "echo2").state == "ready"
    # inspect stats (Flower's worker page) says the same, in readable units, while busy
    stats = workers.fleet.app.control.inspect(timeout=5, destination=[node]).stats()
    shown = stats[node]["toolfleet"]
    assert shown["state"] == "busy", shown
    assert shown["prompt running for"].endswith(" s") and shown["uptime"].endswith("s")
    assert handle.get(timeout=10).output == "slept 3"
    idle = eventually(
        lambda: (r := record_of(workers, "echo1")) and r.state == "ready" and r, 5, "ready"
    )
    assert idle.busy_since is None
    shown = workers.fleet.app.control.inspect(timeout=5, destination=[node]).stats()[node]
    assert shown["toolfleet"]["state"] == "ready" and shown["toolfleet"]["prompts served"] == 1
    assert shown["toolfleet"]["last latency"].endswith(" ms")


def test_sigkilled_worker_leaves_status_within_the_ttl_and_its_tool_dies(
    workers: Workers,
) -> None:
    ready = workers.wait_ready(workers.start("echo", 2))
    tool_pid = ready["echo1"].pid
    assert tool_pid is not None
    proc = workers.procs["echo1"]
    killed_at = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    eventually(lambda: record_of(workers, "echo1") is None, 10, "record expiry")
    ttl = workers.settings.health_ttl
    assert time.monotonic() - killed_at <= ttl + 1.0
    assert wait_gone({tool_pid}) == set(), "the tool outlived its worker"
    # the survivor never flickered out meanwhile, and still answers
    assert record_of(workers, "echo2") is not None
    assert workers.fleet.submit("still here", "echo").get(timeout=10).output == "still here"


def test_killed_tool_is_restarted_and_the_running_prompt_fails(workers: Workers) -> None:
    ready = workers.wait_ready(workers.start("echo"))
    tool_pid = ready["echo1"].pid
    assert tool_pid is not None
    handle = workers.fleet.submit(":sleep 30", "echo")
    eventually(lambda: record_of(workers, "echo1").state == "busy", 5, "busy")
    os.kill(tool_pid, signal.SIGKILL)
    with pytest.raises(ToolCrashed):
        handle.get(timeout=10)
    result = workers.fleet.submit("after", "echo").get(timeout=10)
    assert result.output == "after"
    assert result.generation == 2 and result.pid != tool_pid


def test_idle_tool_killed_is_back_within_a_second_plus_start_up(workers: Workers) -> None:
    ready = workers.wait_ready(workers.start("echo"))
    old = ready["echo1"]
    assert old.pid is not None
    os.kill(old.pid, signal.SIGKILL)
    killed = time.time()
    new = eventually(
        lambda: (
            (r := record_of(workers, "echo1")) and r.generation == 2 and r.state == "ready" and r
        ),
        10,
        "restart",
    )
    assert new.updated_at - killed < 1.0 + 2.0  # the echo tool starts in well under 2 s
    assert new.restarts == 1 and new.pid != old.pid
    assert "died while idle" in (new.last_error or "")


def test_crash_loop_fails_the_worker_and_the_healthy_one_drains_the_queue(
    workers: Workers,
) -> None:
    good = workers.start("flaky", prefix="good")
    bad = workers.start("flaky", prefix="bad", ECHO_TOOL_FAIL="1")
    workers.wait_ready(good)
    failed = eventually(
        lambda: (r := record_of(workers, bad[0])) and r.state == "failed" and r, 15, "failed"
    )
    assert "crash loop: 3 failed starts" in (failed.last_error or "")
    handles = [workers.fleet.submit(f"item {i}", "flaky") for i in range(30)]
    results = [h.get(timeout=30) for h in handles]
    assert [r.output for r in results] == [f"item {i}" for i in range(30)]
    assert {r.worker.split("@")[0] for r in results} == {good[0]}
    # still heartbeating well past the TTL (a record written a TTL after the first failed
    # one, so refreshed, not just not yet expired), still failed
    later = eventually(
        lambda: (
            (r := record_of(workers, bad[0]))
            and r.updated_at > failed.updated_at + workers.settings.health_ttl
            and r
        ),
        workers.settings.health_ttl + 10,
        "a record written a TTL after the failure",
    )
    assert later.state == "failed"


def test_recycle_after_max_prompts(workers: Workers) -> None:
    workers.wait_ready(workers.start("echo3"))
    gens = [workers.fleet.submit(str(i), "echo3").get(timeout=60).generation for i in range(7)]
    assert gens == [1, 1, 1, 2, 2, 2, 3]


def test_inspect_stats_remote_control_and_restart_command(workers: Workers) -> None:
    workers.wait_ready(workers.start("echo"))
    node = workers.node("echo1")
    app = workers.fleet.app
    # limit=1: the one worker's reply ends the wait (not the whole timeout)
    stats = app.control.inspect(timeout=5, limit=1).stats()
    assert stats[node]["toolfleet"]["profile"] == "echo"
    replies = app.control.broadcast("tool_health", reply=True, timeout=5, limit=1)
    assert replies == [{node: replies[0][node]}] and replies[0][node]["state"] == "ready"
    replies = app.control.broadcast("tool_restart", reply=True, timeout=10, destination=[node])
    assert "generation 2" in replies[0][node]["ok"]
    cli = subprocess.run(
        [sys.executable, "-m", "toolfleet", "restart", node],
        env=env_for(workers.settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0 and "generation 3" in cli.stdout, cli.stderr
    assert workers.fleet.submit("x", "echo").get(timeout=10).generation == 3


def test_check_exit_codes(workers: Workers) -> None:
    env = env_for(workers.settings)
    check = [sys.executable, "-m", "toolfleet", "check"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*check, *args], env=env, capture_output=True, text=True)

    empty = run()
    assert empty.returncode == 1 and "no instances reporting" in empty.stderr
    workers.wait_ready(workers.start("echo"))
    assert run("--profile", "echo").returncode == 0
    assert run("--profile", "echo", "--this-host").returncode == 0  # workers run here
    other = run("--profile", "python")
    assert other.returncode == 1 and "no ready instance of profile 'python'" in other.stderr


def test_flower_lists_workers_with_tool_health_and_prompt_tasks(
    workers: Workers, tmp_path: Path
) -> None:
    names = workers.start("echo", 2)
    port = free_port()
    with open(tmp_path / "flower.log", "wb") as log:
        flower = subprocess.Popen(
            flower_command(port),
            env=env_for(workers.settings, FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        workers.wait_ready(names)
        eventually(lambda: _port_open(port), 60, "flower")

        probes: set[str] = set()

        def events_flowing() -> bool:
            # Flower only knows tasks whose events arrive after its receiver connected:
            # a new probe each time, until Flower knows one of them
            probe = workers.fleet.submit("probe", "echo")
            probe.get(timeout=30)
            probes.add(probe.id)
            return not probes.isdisjoint(_get(port, "/api/tasks"))

        eventually(events_flowing, 60, "Flower's event stream", interval=0.25)
        handles = [workers.fleet.submit(f"p{i}", "echo") for i in range(4)]
        ids = {h.id for h in handles}
        [h.get(timeout=10) for h in handles]
        body = eventually(
            lambda: (w := _get(port, "/api/workers?refresh=1")) and len(w) == 2 and w, 60, "workers"
        )
        for node, info in body.items():
            assert node.split("@")[0] in names
            assert info["stats"]["toolfleet"]["state"] in ("ready", "busy")
        tasks = eventually(
            lambda: (t := _get(port, "/api/tasks")) and ids <= set(t) and t, 60, "tasks"
        )
        for task_id in ids:
            assert tasks[task_id]["state"] == "SUCCESS"
            assert tasks[task_id]["runtime"] is not None
            assert tasks[task_id]["name"] == "toolfleet.prompt"
    finally:
        flower.terminate()
        flower.wait(10)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


FLOWER_AUTH = ("ops", "flower-test-password")


def _get(port: int, path: str) -> dict:  # type: ignore[type-arg]
    response = requests.get(f"http://127.0.0.1:{port}{path}", auth=FLOWER_AUTH, timeout=10)
    response.raise_for_status()
    return json.loads(response.text)
