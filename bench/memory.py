"""Memory per instance and Redis commands per prompt: toolfleet vs a bare Celery no-op task.

Run: .venv/bin/python bench/memory.py [--rounds 2 --prompts 300 --bulk 1000]
One private Redis. Phases alternate (toolfleet, no-op, toolfleet, no-op ...), each with
one fresh worker and nothing else running: a python toolfleet worker (prompt
``sum(range(10))``) or a bare no-op worker (bench/noop_app.py, configured like the fleet,
task events on). In each phase:

- Redis commands per prompt: INFO commandstats deltas over ``--prompts`` prompts sent one
  at a time (submit, then get), minus the idle traffic of the same worker measured for
  3 s just before, per command (as bench/health.py counts them);
- RSS: VmRSS of the worker process (/proc/<worker pid>/status; the tool is a child
  process and is reported apart) after the prompts above, and again after ``--bulk``
  more prompts submitted at once (growth).

Figures in bench/out/memory.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis
from celery.result import AsyncResult
from fleet_bench import (
    command_counts,
    exit_on_sigterm,
    noop_app,
    print_rows,
    row,
    rss_kib,
    wait_pinged,
    write_json,
)
from harness import Procs, with_redis

from toolfleet import Fleet, Settings

PROMPT = "sum(range(10))"
EXTRA_COMMANDS_TARGET = 4.0


def phase(settings: Settings, kind: str, name: str, prompts: int, bulk: int) -> dict[str, Any]:
    """One worker of ``kind``: commands per prompt, then its RSS before and after ``bulk``."""
    with Procs(settings) as procs, Fleet(settings) as fleet:
        client = redis.Redis.from_url(settings.broker_url)
        app = noop_app(settings)
        send: Callable[[], Any]
        tool_pid: int | None = None
        if kind == "toolfleet":
            proc = procs.toolfleet_worker("python", name)
            deadline = time.monotonic() + 60
            while not [h for h in fleet.status() if h.worker.startswith(name + "@")]:
                assert time.monotonic() < deadline, f"{name} did not start"
                time.sleep(0.05)
            fleet.wait_ready(1, timeout=60)

            def send() -> Any:
                return fleet.submit(PROMPT, "python")

            def check(result: Any) -> None:
                assert result.output == "45", result

        else:
            proc = procs.noop_worker(name)
            wait_pinged(app, 1)

            def send() -> AsyncResult:
                return app.send_task("bench.noop", queue="bench.noop")

            def check(result: Any) -> None:
                assert result is None

        for _ in range(20):  # warm-up
            check(send().get(timeout=30))
        if kind == "toolfleet":
            (health,) = [h for h in fleet.status() if h.worker.startswith(name + "@")]
            assert health.worker_pid == proc.pid, (health.worker_pid, proc.pid)
            tool_pid = health.pid

        idle_start = command_counts(client)
        time.sleep(3)
        idle_counts = command_counts(client)
        idle = {k: (v - idle_start.get(k, 0)) / 3 for k, v in idle_counts.items()}
        before, t0 = command_counts(client), time.monotonic()
        for _ in range(prompts):
            check(send().get(timeout=30))
        elapsed = time.monotonic() - t0
        after = command_counts(client)
        per_command = {
            k: (v - before.get(k, 0) - idle.get(k, 0) * elapsed) / prompts for k, v in after.items()
        }
        per_command = {k: v for k, v in per_command.items() if abs(v) >= 0.005}

        time.sleep(0.5)
        rss = rss_kib(proc.pid)
        tool_rss = rss_kib(tool_pid) if tool_pid is not None else None
        handles = [send() for _ in range(bulk)]
        for h in handles:
            check(h.get(timeout=120))
        time.sleep(0.5)
        rss_after = rss_kib(proc.pid)
        client.close()
    return {
        "commands_per_prompt": sum(per_command.values()),
        "per_command": dict(sorted(per_command.items(), key=lambda kv: -kv[1])),
        "idle_commands_per_s": sum(idle.values()),
        "worker_rss_kib": rss,
        "worker_rss_after_bulk_kib": rss_after,
        "tool_rss_kib": tool_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="phases of each kind")
    parser.add_argument("--prompts", type=int, default=300, help="prompts counted per phase")
    parser.add_argument("--bulk", type=int, default=1000, help="prompts before the 2nd RSS")
    args = parser.parse_args()
    exit_on_sigterm()

    phases: dict[str, list[dict[str, Any]]] = {"toolfleet": [], "noop": []}
    with with_redis() as settings:
        for i in range(args.rounds):
            for kind in phases:
                result = phase(settings, kind, f"mem-{kind}{i}", args.prompts, args.bulk)
                phases[kind].append(result)
                print(
                    f"{kind} phase {i}: {result['commands_per_prompt']:.2f} commands/prompt,"
                    f" worker RSS {result['worker_rss_kib']} KiB",
                    flush=True,
                )

    def med(kind: str, key: str) -> float:
        return statistics.median(float(p[key]) for p in phases[kind])

    def per_command(kind: str) -> dict[str, float]:
        names = {k for p in phases[kind] for k in p["per_command"]}
        return {
            k: statistics.median(p["per_command"].get(k, 0.0) for p in phases[kind]) for k in names
        }

    tf_cmds, noop_cmds = med("toolfleet", "commands_per_prompt"), med("noop", "commands_per_prompt")
    tf_cmd, noop_cmd = per_command("toolfleet"), per_command("noop")
    extra = {k: round(tf_cmd.get(k, 0.0) - noop_cmd.get(k, 0.0), 3) for k in {*tf_cmd, *noop_cmd}}
    extra = {k: v for k, v in sorted(extra.items(), key=lambda kv: -abs(kv[1])) if abs(v) >= 0.05}
    tf_rss, noop_rss = med("toolfleet", "worker_rss_kib"), med("noop", "worker_rss_kib")
    tf_grow = med("toolfleet", "worker_rss_after_bulk_kib") - tf_rss
    noop_grow = med("noop", "worker_rss_after_bulk_kib") - noop_rss
    rows = [
        row(
            "worker RSS without its tool",
            tf_rss / 1024,
            "MiB",
            "bare no-op Celery worker RSS",
            noop_rss / 1024,
        ),
        row(
            f"worker RSS growth over {args.bulk} more prompts",
            tf_grow / 1024,
            "MiB",
            "bare no-op worker growth",
            noop_grow / 1024,
            ratio=None,
        ),
        row("the python tool's own RSS (apart)", med("toolfleet", "tool_rss_kib") / 1024, "MiB"),
        row(
            "Redis commands per prompt",
            tf_cmds,
            "commands",
            "bare no-op task",
            noop_cmds,
            target=f"at most {EXTRA_COMMANDS_TARGET:g} more",
            passed=tf_cmds - noop_cmds <= EXTRA_COMMANDS_TARGET,
        ),
    ]
    write_json(
        "memory",
        {
            "rounds": args.rounds,
            "prompts": args.prompts,
            "bulk": args.bulk,
            "phases": phases,
            "extra_commands_per_prompt": tf_cmds - noop_cmds,
            "extra_by_command": extra,
            "rows": rows,
        },
    )
    print_rows(f"memory and Redis commands (median of {args.rounds} phases each)", rows)
    print(f"extra commands per prompt ({tf_cmds - noop_cmds:+.2f}) by command: {extra}")


if __name__ == "__main__":
    main()
