"""Redelivery: a lost worker's prompt completes elsewhere; a prompt never runs twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from toolfleet import InstanceHealth, Settings

from ..helpers import eventually
from ..integration.conftest import _fresh_settings
from ..integration.procs import Workers


@pytest.fixture
def settings(redis_server) -> Settings:  # type: ignore[no-untyped-def]
    # a visibility timeout shorter than the slow prompts below
    return _fresh_settings(redis_server, visibility_timeout=3)


def log_everywhere(workers: Workers, names: list[str], path: Path) -> None:
    for name in names:
        workers.fleet.submit(f":log {path}", "echo", worker=workers.node(name)).get(timeout=10)


def wait_busy(workers: Workers, timeout: float = 10.0) -> InstanceHealth:
    """The health record of the first worker seen busy."""
    busy = eventually(
        lambda: [r for r in workers.fleet.status() if r.state == "busy"],
        timeout,
        "a worker busy",
        interval=0.02,
    )
    return busy[0]


def test_prompt_outliving_the_visibility_timeout_runs_once(workers: Workers, tmp_path) -> None:
    names = workers.start("echo", 2)
    workers.wait_ready(names)
    log = tmp_path / "executions.log"
    log_everywhere(workers, names, log)
    started = time.monotonic()
    result = workers.fleet.submit(":sleep 6", "echo").get(timeout=60)
    assert result.output == "slept 6"
    assert log.read_text().splitlines() == [":sleep 6"]  # typed into a tool exactly once
    assert time.monotonic() - started < 30
    # the redelivered copy was answered with the first result, and both workers still serve
    outs = {
        workers.fleet.submit("ping", "echo", worker=workers.node(n)).get(10).output for n in names
    }
    assert outs == {"ping"}


def test_worker_killed_mid_prompt_the_prompt_completes_on_another(
    workers: Workers, tmp_path
) -> None:
    names = workers.start("echo", 2)
    workers.wait_ready(names)
    log = tmp_path / "executions.log"
    log_everywhere(workers, names, log)
    handle = workers.fleet.submit(":sleep 2", "echo")
    busy = wait_busy(workers).worker.split("@")[0]
    killed_at = time.monotonic()
    workers.procs[busy].send_signal(signal.SIGKILL)
    result = handle.get(timeout=60)  # nothing lost: the producer gets a result
    recovery = time.monotonic() - killed_at
    print(f"worker SIGKILL mid-prompt: result {recovery:.1f} s after the kill")
    assert result.output == "slept 2"
    assert result.worker.split("@")[0] != busy
    assert recovery < 20, recovery
    # the killed worker's tool died with it mid-prompt; the survivor's finished it, once
    assert log.read_text().splitlines() == [":sleep 2"]


def test_with_the_default_visibility_timeout_a_dead_workers_prompt_is_put_back(
    redis_server, tmp_path
) -> None:
    """Not an hour later: once the dead worker's health record expires (orphan sweep)."""
    settings = _fresh_settings(redis_server)
    assert settings.visibility_timeout == 3600
    workers = Workers(settings, tmp_path)
    try:
        names = workers.start("echo", 2)
        workers.wait_ready(names)
        log = tmp_path / "executions.log"
        log_everywhere(workers, names, log)
        handle = workers.fleet.submit(":sleep 3", "echo")
        busy = wait_busy(workers)
        assert handle.id in busy.holding  # the live record names the prompt it holds
        victim = busy.worker.split("@")[0]
        killed_at = time.monotonic()
        workers.procs[victim].send_signal(signal.SIGKILL)
        result = handle.get(timeout=60)
        recovery = time.monotonic() - killed_at
        print(f"default visibility timeout, worker SIGKILL: result {recovery:.1f} s after")
        assert result.output == "slept 3" and result.worker.split("@")[0] != victim
        assert recovery < 30, recovery
        assert log.read_text().splitlines() == [":sleep 3"]  # finished once, on the survivor
    finally:
        assert workers.close() == set()
