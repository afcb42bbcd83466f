"""`toolfleet up` as a user runs it: embedded Redis, N workers, Ctrl-C stops everything."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import redis

from toolfleet import Fleet, Settings
from toolfleet.local import free_port, redis_reachable

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
    fleet = Fleet(settings)
    try:
        end = time.monotonic() + 60
        while True:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            try:
                records = fleet.status("python")
            except redis.ConnectionError:
                records = []
            if sum(r.state == "ready" for r in records) == 3:
                break
            assert time.monotonic() < end, "fleet not ready in 60 s"
            time.sleep(0.2)
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
