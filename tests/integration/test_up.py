"""`toolfleet up` as a user runs it: embedded Redis, N workers, Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from urllib.parse import urlparse

import pytest

from toolfleet import Fleet, InstanceHealth, RedisUnavailable, Settings
from toolfleet.cli.local import free_port, redis_reachable, worker_command

from ..helpers import eventually
from .procs import descendants, env_for, wait_gone


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_up_runs_a_fleet_and_a_signal_stops_every_process(sig: int, tmp_path) -> None:
    settings = Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0", heartbeat_interval=0.5)
    assert not redis_reachable(settings.broker_url)
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "toolfleet", "up", "--profile", "python", "--workers", "3"],
            env=env_for(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    # another terminal of the user: the password up keeps for its embedded Redis
    kept = settings.kept_state / f"redis-{urlparse(settings.broker_url).port}.password"
    eventually(kept.exists, 30, "the embedded Redis's password", interval=0.1)
    fleet = Fleet(settings.with_kept_passwords())
    try:

        def three_ready() -> list[InstanceHealth] | None:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            try:
                records = fleet.status("python")
            except RedisUnavailable:
                return None
            return records if sum(r.state == "ready" for r in records) == 3 else None

        records = eventually(three_ready, 60, "3 ready python instances", interval=0.2)
        assert fleet.submit("sum(range(10))", "python").get(timeout=30).output == "45"
        tree = descendants(up.pid)
        tools = {r.pid for r in records if r.pid}
        assert len(tools) == 3 and tools <= tree  # 3 tools, 3 workers, redis-server
        up.send_signal(sig)
        assert up.wait(30) == 0
        assert wait_gone(tree) == set(), "processes left behind"
        assert not redis_reachable(settings.broker_url)
    finally:
        fleet.close()
        if up.poll() is None:
            up.kill()
            up.wait()


def test_forked_workers_each_hold_a_tool_and_a_killed_one_comes_back(
    settings: Settings, tmp_path
) -> None:
    """`toolfleet worker --count 3`: 3 workers forked from one process (what `up` runs)."""
    log = tmp_path / "executions.log"
    launcher = subprocess.Popen(
        worker_command("echo", "fork", count=3, log_dir=tmp_path),
        env=env_for(settings, ECHO_TOOL_LOG=str(log)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp_path,  # where the confined tools log what they ran
    )
    fleet = Fleet(settings)
    try:
        fleet.wait_ready(3, "echo", timeout=60)
        records = {r.worker.split("@")[0]: r for r in fleet.status("echo")}
        assert set(records) == {"fork1", "fork2", "fork3"}
        assert len({r.worker_pid for r in records.values()}) == 3  # a process each
        assert {r.worker_pid for r in records.values()} <= descendants(launcher.pid)
        assert all((tmp_path / f"{name}.log").stat().st_size > 0 for name in records)
        handles = [fleet.submit(f":sleep 0.05 item-{i}", "echo") for i in range(60)]
        eventually(lambda: any(h.ready() for h in handles), 30, "the first answers")
        victim = records["fork2"]
        os.kill(victim.worker_pid, signal.SIGKILL)
        outputs = [h.get(timeout=90).output for h in handles]  # nothing lost
        assert outputs == [f"slept 0.05 item-{i}" for i in range(60)]
        back = eventually(  # the launcher started fork2 again: a new process, a new tool
            lambda: (
                (r := {r.worker.split("@")[0]: r for r in fleet.status("echo")}.get("fork2"))
                and r.state == "ready"
                and r.worker_pid != victim.worker_pid
                and r
            ),
            60,
            "the killed worker back",
            interval=0.1,
        )
        assert fleet.submit("ping", "echo", worker=back.worker).get(timeout=30).output == "ping"
        runs = [line.rsplit(" ", 1)[-1] for line in log.read_text().splitlines()]
        assert sorted(set(runs) - {"ping"}) == sorted(f"item-{i}" for i in range(60))
        tree = descendants(launcher.pid)
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(30) == 0
        assert wait_gone(tree) == set(), "processes left behind"
    finally:
        fleet.close()
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
