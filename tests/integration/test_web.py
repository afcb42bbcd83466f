"""The dashboard's back end on real Redis and processes: one read of the fleet costs the
same few commands whatever its size, a map run publishes its progress, ``toolfleet up
--web`` serves the page behind a token it prints, and an unreachable Redis is one line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
import requests

from toolfleet import Fleet, InstanceHealth, RedisUnavailable, Settings
from toolfleet.cli.local import EmbeddedRedis, free_port
from toolfleet.client.items import MapOutcome
from toolfleet.health import write_health
from toolfleet.keys import GATEWAYS, RUNS, gateway_key, run_key
from toolfleet.web.view import FleetView

from ..helpers import eventually
from .procs import Workers, descendants, env_for, wait_gone


def record(i: int) -> InstanceHealth:
    now = time.time()
    return InstanceHealth(
        worker=f"echo{i}@host",
        profile="echo",
        state="ready",
        worker_pid=1000 + i,
        generation=1,
        prompts_served=i,
        started_at=now,
        updated_at=now,
        version="0.1.0",
    )


def commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def test_a_read_of_the_fleet_costs_the_same_commands_for_3_or_300_workers() -> None:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        view = FleetView(client)
        try:
            used = {}
            for size in (3, 300):
                for i in range(size):
                    write_health(client, record(i), ttl=60)
                view.read()  # the change index, empty: nothing cached
                before = commands(client)
                state = view.read()
                after = commands(client)
                assert len(state["instances"]) == size
                used[size] = {
                    name: after[name] - before.get(name, 0)
                    for name in after
                    if name != "info" and after[name] != before.get(name, 0)
                }
            # the registry (prune, read), the runs' index (prune, read), the changes'
            # index, then one MGET of every record: no command per worker; and the
            # model gateways' upstreams (none here)
            expected = {
                "zremrangebyscore": 2,
                "zrangebyscore": 1,
                "zrange": 2,
                "mget": 1,
                "smembers": 1,
            }
            assert used[3] == used[300] == expected
            assert state["gateways"] == []
            # an upstream a gateway served: its figures are on the page
            client.sadd(GATEWAYS, "openai-main")
            client.hset(gateway_key("openai-main", "stats"), mapping={"requests": 7})
            (row,) = view.read()["gateways"]
            assert row["upstream"] == "openai-main" and row["requests"] == 7
            assert row["throttled"] == 0 and row["quota_exhausted"] == 0
        finally:
            client.close()


def test_a_map_run_publishes_its_progress(workers: Workers, tmp_path: Path) -> None:
    workers.wait_ready(workers.start("python"))
    go = tmp_path / "go"
    wait = f"import os, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.05)"
    outcomes: list[MapOutcome] = []
    client = redis.Redis.from_url(workers.settings.result_backend, decode_responses=True)

    def run() -> None:
        with Fleet(workers.settings) as fleet:
            items = ["6 * 7", "1/0", wait]
            outcomes.extend(fleet.map(items, "python", chunk=1, in_flight=1))

    runner = threading.Thread(target=run)
    runner.start()
    try:

        def progress() -> dict[str, str] | None:
            ids = client.zrange(RUNS, 0, -1)
            fields = client.hgetall(run_key(ids[0])) if ids else {}
            return fields if fields.get("done") == "1" and fields.get("failed") == "1" else None

        running = eventually(progress, 30, "done 1, failed 1")
        assert running["state"] == "running" and running["total"] == "3"
        assert running["profile"] == "python" and float(running["rate"]) > 0
        assert 0 < client.pttl(run_key(running["id"])) <= 30_000
    finally:
        go.touch()
        runner.join(60)
    assert [o.ok for o in outcomes] == [True, False, True], outcomes
    final = client.hgetall(run_key(running["id"]))
    assert (final["done"], final["failed"], final["state"]) == ("2", "1", "finished")
    assert client.zscore(RUNS, running["id"]) is not None
    client.close()


def test_up_web_serves_the_page_behind_a_token_it_prints(tmp_path: Path) -> None:
    settings = Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0", heartbeat_interval=0.5)
    port = free_port()
    env = env_for(settings)
    env.pop("TOOLFLEET_WEB_TOKEN", None)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "toolfleet",
                "up",
                "-p",
                "echo=2",
                "--web",
                "--web-port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        link = eventually(
            lambda: re.search(rf"Dashboard: ({base}/login\?token=(\S+))", log.read_text()),
            60,
            lambda: f"the dashboard's link in {log.read_text()!r}",
            interval=0.2,
        )
        url, token = link[1], link[2]
        where = re.search(r"worker logs in\s+(\S+)", log.read_text())
        assert where is not None
        logs = Path(where[1])
        bearer = {"Authorization": f"Bearer {token}"}

        def listed() -> set[str]:
            try:
                state = requests.get(base + "/api/state", headers=bearer, timeout=5).json()
            except (requests.ConnectionError, ValueError):
                return set()
            return {i["worker"].split("@")[0] for i in state.get("instances", [])}

        eventually(lambda: listed() == {"echo1", "echo2"}, 30, "both workers listed")
        assert requests.get(base + "/api/state", timeout=5).status_code == 401
        with requests.Session() as browser:
            page = browser.get(url, timeout=5)
        assert page.status_code == 200 and page.url == base + "/" and token not in page.text
        tree = descendants(up.pid)
        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        assert wait_gone(tree) == set(), "processes left behind"
        web_log = (logs / "web.log").read_text()
        assert "toolfleet web: the fleet at" in web_log and token not in web_log
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_an_unreachable_redis_is_one_line() -> None:
    settings = Settings(broker_url=f"redis://:pw-123456@127.0.0.1:{free_port()}/0")
    done = subprocess.run(
        [sys.executable, "-m", "toolfleet", "web", "--port", str(free_port())],
        env=env_for(settings, TOOLFLEET_WEB_TOKEN="t" * 20),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: {RedisUnavailable.__name__}: cannot use Redis at redis://:**@")
    assert "pw-123456" not in line
