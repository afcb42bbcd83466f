"""Throughput: prompts/s on 1, 2 and 4 toolfleet workers vs bare Celery no-op tasks.

Run: .venv/bin/python bench/throughput.py [--prompts 300 --rounds 6]
One private Redis; python workers (prompt ``sum(range(10))``) and bare no-op workers
(bench/noop_app.py, threads pool, concurrency 1, task events on, like the fleet's) are
added 1 -> 2 -> 4 side by side. At each worker count, rounds alternate between the two:
all prompts are submitted at once, then every result is fetched; the rate is prompts
over the time from the first submit to the last result. Also measured: the CPU time per
prompt of every process on the path (workers, tools, Redis, this producer), which bounds
the rate once the machine's cores are busy. Figures: bench/out/throughput.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import redis
from fleet_bench import (
    cpu_seconds,
    exit_on_sigterm,
    noop_app,
    print_rows,
    row,
    wait_pinged,
    write_json,
)
from harness import Procs, with_redis

from toolfleet import Fleet

PROMPT = "sum(range(10))"
TARGET = 0.9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300, help="prompts per measurement")
    parser.add_argument("--rounds", type=int, default=6, help="measurements of each kind")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    exit_on_sigterm()
    n = args.prompts

    rates: dict[int, dict[str, list[float]]] = {}
    cpu: dict[int, dict[str, list[float]]] = {}
    with with_redis() as settings, Procs(settings) as procs, Fleet(settings) as fleet:
        app = noop_app(settings)
        with redis.Redis.from_url(settings.broker_url) as client:
            redis_pid = int(client.info("server")["process_id"])

        def machine_cpu() -> float:
            """CPU seconds of everything on the path: workers, tools, Redis, this process."""
            own = os.times()
            pids = [redis_pid, *(p.pid for p in procs.procs)]
            return cpu_seconds(pids) + own.user + own.system

        def via_toolfleet() -> float:
            start = time.perf_counter()
            handles = [fleet.submit(PROMPT, "python") for _ in range(n)]
            outputs = [h.get(timeout=120).output for h in handles]
            elapsed = time.perf_counter() - start
            assert outputs == ["45"] * n, set(outputs)
            return n / elapsed

        def via_noop() -> float:
            start = time.perf_counter()
            results = [app.send_task("bench.noop", queue="bench.noop") for _ in range(n)]
            for r in results:
                r.get(timeout=120)
            return n / (time.perf_counter() - start)

        kinds: dict[str, Callable[[], float]] = {"toolfleet": via_toolfleet, "noop": via_noop}
        started = 0
        for workers in args.workers:
            while started < workers:
                started += 1
                procs.toolfleet_worker("python", f"tput-python{started}")
                procs.noop_worker(f"tput-noop{started}")
            procs.wait_toolfleet(fleet, workers)
            wait_pinged(app, 2 * workers)  # the no-op workers (and the fleet's) listen
            for fn in kinds.values():  # warm-up: every worker has taken work
                fn()
            rates[workers] = {"toolfleet": [], "noop": []}
            cpu[workers] = {"toolfleet": [], "noop": []}
            for i in range(args.rounds):
                order = list(kinds) if i % 2 == 0 else list(reversed(kinds))
                for name in order:
                    used = machine_cpu()
                    rates[workers][name].append(kinds[name]())
                    cpu[workers][name].append(1000 * (machine_cpu() - used) / n)
            print(f"{workers} worker(s): {rates[workers]}", flush=True)

    rows = []
    points = {}
    for workers, by_kind in rates.items():
        tf = statistics.median(by_kind["toolfleet"])
        noop = statistics.median(by_kind["noop"])
        paired = [t / b for t, b in zip(by_kind["toolfleet"], by_kind["noop"], strict=True)]
        ratio = tf / noop
        points[str(workers)] = {
            "toolfleet_prompts_per_s": by_kind["toolfleet"],
            "noop_tasks_per_s": by_kind["noop"],
            "median_toolfleet": tf,
            "median_noop": noop,
            "ratio_of_medians": ratio,
            "paired_ratios": paired,
            "cpu_ms_per_prompt_all_processes": {
                kind: statistics.median(values) for kind, values in cpu[workers].items()
            },
        }
        rows.append(
            row(
                f"{workers} worker(s): toolfleet prompts/s",
                tf,
                "prompts/s",
                "bare no-op tasks/s",
                noop,
                ratio=ratio,
                target=f"ratio >= {TARGET}",
                passed=ratio >= TARGET,
            )
        )
    for workers, point in points.items():
        used = point["cpu_ms_per_prompt_all_processes"]
        rows.append(
            row(
                f"{workers} worker(s): CPU per prompt, all processes",
                used["toolfleet"],
                "ms",
                "same for a bare no-op task",
                used["noop"],
            )
        )
    write_json(
        "throughput",
        {
            "prompts_per_measurement": n,
            "rounds": args.rounds,
            "prompt": PROMPT,
            "points": points,
            "rows": rows,
        },
    )
    print_rows(f"throughput, {n} prompts submitted at once (median of {args.rounds})", rows)


if __name__ == "__main__":
    main()
