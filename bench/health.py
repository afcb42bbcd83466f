"""Health costs: Redis commands per prompt (heartbeat on/off), idle commands, restart time.

Run: .venv/bin/python bench/health.py
Baselines in the same run: the same worker with health records off; bare Celery no-op
workers for idle traffic; a bare tool start for the restart time.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import redis
from harness import BENCH, Procs, stats, with_redis

from toolfleet import Fleet, Settings
from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool import ToolInstance


def total_calls(client: redis.Redis) -> int:
    info = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in info.items() if k != "cmdstat_info")


def commands_per_call(
    client: redis.Redis, call: Callable[[], object], n: int, gap: float = 0.0
) -> float:
    """Redis commands per ``call()``, made ``n`` times ``gap`` s apart; the idle traffic
    of as long a time (measured just before) is subtracted."""
    start_idle = total_calls(client)
    time.sleep(3)
    idle_rate = (total_calls(client) - start_idle) / 3
    start, t0 = total_calls(client), time.monotonic()
    for _ in range(n):
        call()
        time.sleep(gap)
    elapsed = time.monotonic() - t0
    return (total_calls(client) - start - idle_rate * elapsed) / n


def per_prompt(settings: Settings, heartbeat: float, text: str, n: int, gap: float = 0.0) -> float:
    """Redis commands per prompt for one worker whose heartbeat interval is ``heartbeat``."""
    worker_settings = Settings(broker_url=settings.broker_url, heartbeat_interval=heartbeat)
    with Procs(worker_settings) as procs, Fleet(settings) as fleet:
        client = redis.Redis.from_url(settings.broker_url)
        procs.toolfleet_worker("echo", f"cmds-{heartbeat}")
        deadline = time.monotonic() + 60
        while not fleet.app.control.ping(timeout=0.5):
            assert time.monotonic() < deadline
        for _ in range(20):
            fleet.submit("warm", "echo").get(timeout=30)
        per = commands_per_call(client, lambda: fleet.submit(text, "echo").get(timeout=30), n, gap)
        client.close()
        return per


def idle_per_worker_second(settings: Settings, kind: str, workers: int, seconds: float) -> float:
    with Procs(settings) as procs, Fleet(settings) as fleet:
        client = redis.Redis.from_url(settings.broker_url)
        for i in range(workers):
            if kind == "toolfleet":
                procs.toolfleet_worker("echo", f"idle{i}")
            else:
                procs.noop_worker(f"noop{i}")
        deadline = time.monotonic() + 60
        while len(fleet.app.control.ping(timeout=0.5)) < workers:
            assert time.monotonic() < deadline
        time.sleep(3)
        start = total_calls(client)
        time.sleep(seconds)
        used = total_calls(client) - start
        client.close()
        return used / workers / seconds


def restart_times(settings: Settings, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds from SIGKILL of the tool to 'ready' with a new generation; bare starts."""
    ready_after: list[float] = []
    with Procs(settings) as procs, Fleet(settings) as fleet:
        procs.toolfleet_worker("python", "restart")
        fleet.wait_ready(1)
        for _ in range(rounds):
            fleet.submit("1", "python").get(timeout=30)  # a working tool, then it dies
            (before,) = fleet.status("python", fresher_than=time.time())
            assert before.pid is not None
            os.kill(before.pid, signal.SIGKILL)
            killed = time.time()
            while True:
                (now,) = fleet.status("python") or [before]
                if now.generation > before.generation and now.state == "ready":
                    ready_after.append(now.updated_at - killed)
                    break
                time.sleep(0.01)
    bare: list[float] = []
    for _ in range(rounds):
        inst = ToolInstance(BUILTIN_PROFILES["python"])
        t0 = time.monotonic()
        inst.start()
        bare.append(time.monotonic() - t0)
        inst.close()
    return ready_after, bare


def main() -> None:
    out: dict[str, object] = {}
    print("measuring (about 3 minutes) ...", flush=True)
    with with_redis() as settings:
        fast_on = per_prompt(settings, 2.0, "x", 500)
        fast_off = per_prompt(settings, 0, "x", 500)
        slow_on = per_prompt(settings, 2.0, ":sleep 0.1", 50)
        slow_off = per_prompt(settings, 0, ":sleep 0.1", 50)
        apart_on = per_prompt(settings, 2.0, ":sleep 0.1", 30, gap=0.2)
        apart_off = per_prompt(settings, 0, ":sleep 0.1", 30, gap=0.2)
        out["redis_commands_per_prompt"] = {
            "fast_prompt": {"heartbeat_on": fast_on, "heartbeat_off": fast_off},
            "prompt_of_100ms_back_to_back": {"heartbeat_on": slow_on, "heartbeat_off": slow_off},
            "prompt_of_100ms_200ms_apart": {"heartbeat_on": apart_on, "heartbeat_off": apart_off},
        }
        out["idle_commands_per_worker_second"] = {
            "toolfleet": idle_per_worker_second(settings, "toolfleet", 3, 10),
            "celery_noop": idle_per_worker_second(settings, "noop", 3, 10),
        }
        ready, bare = restart_times(
            Settings(broker_url=settings.broker_url, heartbeat_interval=0.5), 5
        )
        out["tool_kill_to_ready_s"] = {"toolfleet": stats(ready), "bare_tool_start": stats(bare)}
    path = BENCH / "out" / "health.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
