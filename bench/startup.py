"""Fleet start-up and graceful shutdown: N toolfleet workers vs one bare Celery worker.

Run: .venv/bin/python bench/startup.py [--sizes 1 5 10 --repeats 3 --profile python]
One private Redis. For each size N, each repeat starts N bare no-op workers
(bench/noop_app.py), timed until all answer ``app.control.ping`` (N = 1 is the baseline
of the targets), then N toolfleet workers as ``toolfleet up`` starts them (N > 1: one
``toolfleet worker --count N`` process forks them after its imports), timed until all N
are ``ready`` in ``Fleet.status()``, and, for comparison, N separate ``toolfleet worker``
processes. Each group is then stopped with SIGTERM (to the launcher, or to every worker)
and timed until every worker process and every tool process has exited. Only one group runs at a
time. Figures are medians over repeats, in bench/out/startup.json.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import time

from fleet_bench import alive, exit_on_sigterm, noop_app, print_rows, row, wait_pinged, write_json
from harness import Procs, with_redis

from toolfleet import Fleet, Settings

POLL = 0.02  # seconds between status reads (and ping probes)
READY_TARGET = 2.0  # 5 workers ready within 2x one bare worker's start
STOP_TARGET = 3.0  # 5 workers stopped in under 3 s


def stop_all(procs: list[subprocess.Popen[bytes]], tools: list[int], timeout: float = 30) -> float:
    """SIGTERM every worker; seconds until workers and their tools have all exited."""
    start = time.perf_counter()
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    while any(p.poll() is None for p in procs) or any(alive(pid) for pid in tools):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"not stopped within {timeout:g} s")
        time.sleep(0.002)
    return time.perf_counter() - start


def bare_workers(settings: Settings, n: int, tag: str) -> tuple[float, float]:
    """Seconds until ``n`` bare no-op workers answer ping; seconds their SIGTERM takes."""
    app = noop_app(settings)
    with Procs(settings) as procs:
        start = time.perf_counter()
        for i in range(n):
            procs.noop_worker(f"{tag}-noop{i}")
        wait_pinged(app, n, timeout=120, probe=POLL)
        up = time.perf_counter() - start
        time.sleep(0.5)
        down = stop_all(procs.procs, [])
    return up, down


def toolfleet_workers(
    settings: Settings, fleet: Fleet, profile: str, n: int, tag: str, *, forked: bool
) -> dict[str, float]:
    """Start ``n`` workers; seconds until all are ready, and until all have stopped.

    ``forked``: one ``toolfleet worker --count n`` process forks them (what ``toolfleet
    up`` does); else ``n`` separate ``toolfleet worker`` processes.
    """
    names = {f"{tag}-{profile}{i}" for i in range(1, n + 1)}  # the launcher's names
    with Procs(settings) as procs:
        start, start_unix = time.perf_counter(), time.time()
        if forked:
            procs.toolfleet_workers(profile, f"{tag}-{profile}", n)
        else:
            for name in sorted(names):
                procs.toolfleet_worker(profile, name)
        while True:
            ready = [
                h
                for h in fleet.status(profile)
                if h.state == "ready" and h.worker.split("@")[0] in names
            ]
            if len(ready) == n:
                break
            dead = [p.pid for p in procs.procs if p.poll() is not None]
            if dead or time.perf_counter() - start > 120:
                raise RuntimeError(f"{len(ready)} of {n} ready; exited {dead}; logs {procs.logs}")
            time.sleep(POLL)
        up = time.perf_counter() - start
        workers = {h.worker_pid for h in ready}
        if not forked:
            assert workers == {p.pid for p in procs.procs}
        assert len(workers) == n
        tools = [h.pid for h in ready if h.pid is not None]
        assert len(tools) == n and all(alive(pid) for pid in tools)
        time.sleep(0.5)
        down = stop_all(procs.procs, [*tools, *workers])
    return {
        "ready_s": up,
        # when the bootstep spawned the tools (the slowest worker): Celery's share
        "tools_spawned_s": max(h.started_at for h in ready) - start_unix,
        "stopped_s": down,
        "stopped_per_worker_s": down / n,
        "tool_pids_checked": len(tools),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", default="python", help="python or echo")
    args = parser.parse_args()
    exit_on_sigterm()

    bare: dict[int, list[tuple[float, float]]] = {n: [] for n in args.sizes}
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in args.sizes}
    separate: dict[int, list[dict[str, float]]] = {n: [] for n in args.sizes if n > 1}
    with with_redis() as settings, Fleet(settings) as fleet:
        for rep in range(args.repeats):
            for n in args.sizes:
                time.sleep(1)  # let the machine settle after the last stop
                up, down = bare_workers(settings, n, f"r{rep}n{n}")
                bare[n].append((up, down))
                print(f"repeat {rep}: {n} bare workers up {up:.2f} s, down {down:.2f} s")
                time.sleep(1)
                run = toolfleet_workers(
                    settings, fleet, args.profile, n, f"r{rep}n{n}", forked=n > 1
                )
                runs[n].append(run)
                print(
                    f"repeat {rep}: {n} toolfleet workers ready {run['ready_s']:.2f} s,"
                    f" stopped {run['stopped_s']:.2f} s",
                    flush=True,
                )
                if n > 1:
                    time.sleep(1)
                    run = toolfleet_workers(
                        settings, fleet, args.profile, n, f"r{rep}s{n}", forked=False
                    )
                    separate[n].append(run)
                    print(f"repeat {rep}: {n} separate processes ready {run['ready_s']:.2f} s")

    bare_up = {n: statistics.median(v[0] for v in values) for n, values in bare.items()}
    bare_down = {n: statistics.median(v[1] for v in values) for n, values in bare.items()}
    one = min(args.sizes)  # the baseline: one bare worker (the smallest size, normally 1)
    rows = []
    sizes = {}
    for n, values in runs.items():
        median = {k: statistics.median(v[k] for v in values) for k in values[0]}
        sizes[str(n)] = {
            "median": median,
            "runs": values,
            "bare_ping_s": [v[0] for v in bare[n]],
            "bare_stopped_s": [v[1] for v in bare[n]],
        }
        ratio = median["ready_s"] / bare_up[one]
        rows.append(
            row(
                f"{n} {args.profile} worker(s) all ready",
                median["ready_s"],
                "s",
                f"{one} bare Celery worker(s) answer ping",
                bare_up[one],
                target=f"ratio <= {READY_TARGET:g}" if n == 5 else None,
                passed=ratio <= READY_TARGET if n == 5 else None,
            )
        )
    for n in runs:
        if n != one:
            rows.append(
                row(
                    f"{n} {args.profile} worker(s) all ready (same-size baseline)",
                    sizes[str(n)]["median"]["ready_s"],
                    "s",
                    f"{n} bare Celery workers answer ping",
                    bare_up[n],
                )
            )
    for n, values in separate.items():
        rows.append(
            row(
                f"{n} {args.profile} workers as {n} separate processes, all ready",
                statistics.median(v["ready_s"] for v in values),
                "s",
                f"{one} bare Celery worker(s) answer ping",
                bare_up[one],
            )
        )
    for n in runs:
        stopped = sizes[str(n)]["median"]["stopped_s"]
        rows.append(
            row(
                f"{n} {args.profile} worker(s) stopped (SIGTERM, tools too)",
                stopped,
                "s",
                f"{n} bare Celery worker(s) stopped (SIGTERM)",
                bare_down[n],
                target=f"< {STOP_TARGET:g} s" if n == 5 else None,
                passed=stopped < STOP_TARGET if n == 5 else None,
            )
        )
    write_json(
        "startup",
        {
            "profile": args.profile,
            "repeats": args.repeats,
            "sizes": sizes,
            "separate_processes": {str(n): v for n, v in separate.items()},
            "rows": rows,
        },
    )
    print_rows(f"fleet start-up and shutdown (median of {args.repeats})", rows)


if __name__ == "__main__":
    main()
