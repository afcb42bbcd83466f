"""Draining real workers (``toolfleet drain``, a Kubernetes preStop hook): a drained worker
takes no new shared prompt and no new session, finishes what it runs, serves the session
holding it until it closes, and nothing queued meanwhile is lost."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from toolfleet import NoWorkers
from toolfleet.cli.commands import cli
from toolfleet.client.drain import DrainResult, drain
from toolfleet.models import InstanceHealth

from ..helpers import eventually
from .procs import Workers, env_for

QUEUE = "toolfleet.python"


def gated(path: Path) -> str:
    """A python prompt that runs until ``path`` exists, then answers 'released'."""
    exists = f"lambda: __import__('os').path.exists({str(path)!r})"
    return f"[__import__('time').sleep(0.02) for _ in iter({exists}, True)] and 0 or 'released'"


def only(node: str):  # type: ignore[no-untyped-def]
    return lambda record: record.worker == node


class Background:
    """A drain running in a thread, its progress lines collected as they come."""

    def __init__(self, workers: Workers, node: str, timeout: float = 60.0) -> None:
        self.lines: list[str] = []
        self.result: DrainResult | None = None
        self.thread = threading.Thread(
            target=self._run, args=(workers, node, timeout), name="drain", daemon=True
        )
        self.thread.start()

    def _run(self, workers: Workers, node: str, timeout: float) -> None:
        self.result = drain(workers.fleet, only(node), timeout=timeout, progress=self.lines.append)

    def said(self, line: str, timeout: float = 20.0) -> None:
        eventually(lambda: line in self.lines, timeout, lambda: f"{line!r} in {self.lines}")

    def finish(self, timeout: float = 30.0) -> DrainResult:
        self.thread.join(timeout)
        assert self.result is not None, f"the drain did not end: {self.lines}"
        return self.result


def record(workers: Workers, node: str) -> InstanceHealth | None:
    return next((r for r in workers.fleet.status() if r.worker == node), None)


def test_a_drained_worker_takes_no_shared_prompt_nor_session(workers: Workers) -> None:
    workers.wait_ready(workers.start("python", 1))
    drained = workers.node("python1")
    lines: list[str] = []
    result = drain(workers.fleet, only(drained), timeout=30, progress=lines.append)
    assert result.drained and result.workers == (drained,) and not result.waiting
    assert lines[0] == f"{drained}: draining (profile python)"
    assert f"{drained}: takes no more prompts from {QUEUE}" in lines
    assert lines[-1] == f"{drained}: drained"

    # the only worker is drained: the prompts wait in the queue, none is taken ...
    handles = [workers.fleet.submit(f"{i} * 7", "python") for i in range(3)]
    with redis.Redis.from_url(workers.settings.broker_url) as client:
        assert client.llen(QUEUE) == 3
    # ... until another worker comes, which answers every one of them
    workers.wait_ready(workers.start("python", 1))
    other = workers.node("python2")
    results = [h.get(timeout=30) for h in handles]
    assert [r.output for r in results] == ["0", "7", "14"]
    assert {r.worker for r in results} == {other}
    # the drained worker still serves what is sent to it by name (its direct queue) ...
    assert workers.fleet.submit("6 * 7", "python", worker=drained).get(timeout=30).worker == drained
    # ... but takes no new session: new sessions go to the other worker
    with pytest.raises(NoWorkers):
        workers.fleet.session("python", worker=drained, wait=1.0)
    with workers.fleet.session("python") as session:
        assert session.worker == other
    # and the drained worker's record still says it is fine (its healthcheck passes)
    seen = record(workers, drained)
    assert seen is not None and seen.state == "ready"


def test_drain_waits_for_the_running_prompt_and_loses_nothing(
    workers: Workers, tmp_path: Path
) -> None:
    workers.wait_ready(workers.start("python", 1))
    node = workers.node("python1")
    gate = tmp_path / "release"
    running = workers.fleet.submit(gated(gate), "python")
    eventually(
        lambda: (r := record(workers, node)) is not None and r.prompt_id == running.id,
        10,
        "the worker runs the gated prompt",
    )
    background = Background(workers, node)
    background.said(f"{node}: waiting for prompt {running.id} to finish")
    # sent while the drain waits: it must neither run there nor be lost
    queued = workers.fleet.submit("6 * 7", "python")
    assert background.thread.is_alive(), background.lines
    gate.touch()
    answer = running.get(timeout=30)
    assert (answer.output, answer.worker, answer.ok) == ("'released'", node, True)
    result = background.finish()
    assert result.drained, result
    assert background.lines[-1] == f"{node}: drained"
    workers.wait_ready(workers.start("python", 1))
    late = queued.get(timeout=30)
    assert (late.output, late.worker) == ("42", workers.node("python2"))


def test_drain_waits_for_an_open_session_which_it_still_serves(workers: Workers) -> None:
    workers.wait_ready(workers.start("python", 2))
    node, other = workers.node("python1"), workers.node("python2")
    session = workers.fleet.session("python", worker=node)
    session.send("x = 41").get(timeout=30)
    background = Background(workers, node)
    background.said(f"{node}: waiting for session {session.id} to close")
    # the session is still served by its instance, state and all
    answer = session.send("x + 1").get(timeout=30)
    assert (answer.output, answer.worker) == ("42", node)
    shared = [workers.fleet.submit(f"{i} + 1", "python") for i in range(4)]
    assert {h.get(timeout=30).worker for h in shared} == {other}
    assert background.thread.is_alive(), background.lines
    session.close()
    result = background.finish()
    assert result.drained, result
    # the session's end turned its worker's shared queue back on (its own switch); the
    # drain turned it off again: prompts sent now all go to the other worker
    after = [workers.fleet.submit(f"{i} * 2", "python") for i in range(6)]
    assert [h.get(timeout=30).output for h in after] == [str(i * 2) for i in range(6)]
    assert {h.get(timeout=30).worker for h in after} == {other}


def test_a_drain_that_times_out_says_what_it_waits_for(workers: Workers) -> None:
    workers.wait_ready(workers.start("python", 1))
    node = workers.node("python1")
    with workers.fleet.session("python", worker=node) as session:
        result = drain(workers.fleet, only(node), timeout=1.0)
        assert not result.drained and result.workers == (node,)
        assert result.waiting == {node: f"waiting for session {session.id} to close"}
        # the command: exit status 1, the reason on one line
        env = workers.settings.to_env()
        run = CliRunner().invoke(cli, ["drain", "--worker", node, "--timeout", "1"], env=env)
        assert run.exit_code == 1, run.output
        assert f"not drained after 1 s: {node}: waiting for session {session.id}" in run.output
        assert session.send("6 * 7").get(timeout=30).output == "42"


def test_drain_needs_a_selection_and_says_when_nothing_runs(workers: Workers) -> None:
    env = workers.settings.to_env()
    run = CliRunner().invoke(cli, ["drain"], env=env)
    assert run.exit_code == 2 and "--this-host" in run.output
    run = CliRunner().invoke(cli, ["drain", "--profile", "python", "--timeout", "5"], env=env)
    assert run.exit_code == 0, run.output
    assert "nothing to drain: no instance of profile 'python' is reporting" in run.output


def test_the_prestop_command_drains_this_host(workers: Workers) -> None:
    """What a pod's preStop hook runs, as a real process: every worker of this host."""
    workers.wait_ready(workers.start("python", 2))
    proc = subprocess.run(
        [sys.executable, "-m", "toolfleet", "drain", "--this-host", "--timeout", "60"],
        env=env_for(workers.settings),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("python1", "python2"):
        node = workers.node(name)
        assert node.endswith("@" + socket.gethostname())
        assert f"{node}: drained" in proc.stdout.splitlines()
    assert proc.stdout.rstrip().splitlines()[-1].startswith("drained 2 worker(s) in ")
    handle = workers.fleet.submit("1 + 1", "python")
    with redis.Redis.from_url(workers.settings.broker_url) as client:
        assert client.llen(QUEUE) == 1
    workers.wait_ready(workers.start("python", 1))
    assert handle.get(timeout=30).worker == workers.node("python3")
