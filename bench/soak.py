"""Soak: 64 workers on one machine under steady load for 10 minutes.

Run: .venv/bin/python bench/soak.py [--workers 64] [--minutes 10] [--rate 20]
Every 30 s: status latency, Redis CPU and memory, worker RSS and PSS (shared pages
counted once: ``up`` forks the workers from one process). At the end: prompts sent,
answered, lost (must be 0). Baselines in the same run: the first sample of each figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

import redis
from harness import BENCH, stats, timed, with_redis

from toolfleet import Fleet
from toolfleet.cli.local import LocalFleet
from toolfleet.client.handle import PromptHandle


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of ``pid`` in KiB, from /proc (0, 0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    fields = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()[1:]}
    return fields.get("Rss", 0), fields.get("Pss", 0)


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    try:
        return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=20, help="prompts per second")
    parser.add_argument("--profile", default="echo")
    args = parser.parse_args()
    samples: list[dict[str, float]] = []
    sent: dict[int, PromptHandle] = {}
    stop = threading.Event()
    with with_redis() as settings:
        client = redis.Redis.from_url(settings.result_backend)
        fleet_procs = LocalFleet(settings, {args.profile: args.workers})
        t0 = time.monotonic()
        fleet_procs.start(timeout=600)
        started = time.monotonic() - t0
        print(f"{args.workers} workers ready in {started:.1f} s", flush=True)
        launcher = fleet_procs.procs[args.profile].pid

        def produce() -> None:
            with Fleet(settings) as fleet:
                i, begin = 0, time.monotonic()
                while not stop.is_set():
                    sent[i] = fleet.submit(f"soak {i}", args.profile)
                    i += 1
                    stop.wait(max(0.0, begin + i / args.rate - time.monotonic()))

        producer = threading.Thread(target=produce, daemon=True)
        with Fleet(settings) as fleet:
            producer.start()
            end = time.monotonic() + args.minutes * 60
            last_cpu = None
            while True:
                info = client.info()
                cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
                now = time.monotonic()
                status_ms = stats([timed(fleet.status) for _ in range(20)])["p50"]
                pids = children(launcher)  # the forked workers; their children are tools
                tools = [c for p in pids for c in children(p)]
                mem = [memory_kib(p) for p in pids]
                tool_mem = [memory_kib(p) for p in tools]
                sample = {
                    "t": now - t0,
                    "sent": len(sent),
                    "status_ms": status_ms,
                    "live": len(fleet.status()),
                    "redis_mib": int(info["used_memory"]) / 2**20,
                    "redis_cpu_pct": 0.0
                    if last_cpu is None
                    else 100 * (cpu - last_cpu[0]) / (now - last_cpu[1]),
                    "worker_rss_mib": statistics.mean(r for r, _ in mem) / 1024,
                    "worker_pss_mib": statistics.mean(p for _, p in mem) / 1024,
                    "tool_rss_mib": statistics.mean(r for r, _ in tool_mem) / 1024
                    if tool_mem
                    else 0.0,
                    "workers": len(pids),
                }
                last_cpu = (cpu, now)
                samples.append(sample)
                print(json.dumps({k: round(v, 2) for k, v in sample.items()}), flush=True)
                if now >= end:
                    break
                time.sleep(min(30.0, max(0.0, end - now)))
            stop.set()
            producer.join(30)
            lost, wrong = [], []
            for i, handle in sent.items():
                try:
                    result = handle.get(timeout=120)
                    if result.output != f"soak {i}":
                        wrong.append(i)
                except Exception:
                    lost.append(i)
        fleet_procs.stop()
        client.close()
    first, last = samples[1], samples[-1]
    rows = [
        ("Fleet.status() p50", "status_ms", "ms"),
        ("Redis memory", "redis_mib", "MiB"),
        ("Redis CPU", "redis_cpu_pct", "%"),
        ("worker RSS (mean)", "worker_rss_mib", "MiB"),
        ("worker PSS (mean)", "worker_pss_mib", "MiB"),
        ("tool RSS (mean)", "tool_rss_mib", "MiB"),
    ]
    lines = [
        f"{args.workers} `{args.profile}` workers (ready in {started:.0f} s), "
        f"{args.rate:g} prompts/s for {args.minutes:g} min: {len(sent)} sent, "
        f"{len(sent) - len(lost) - len(wrong)} answered, {len(lost)} lost, "
        f"{len(wrong)} wrong",
        "",
        "| figure | at the end | at the start (same run) | ratio | max over the run |",
        "|---|---|---|---|---|",
    ]
    for name, key, unit in rows:
        top = max(s[key] for s in samples[1:])
        ratio = last[key] / first[key] if first[key] else float("nan")
        lines.append(
            f"| {name} | {last[key]:.2f} {unit} | {first[key]:.2f} {unit} | {ratio:.3f} "
            f"| {top:.2f} {unit} |"
        )
    print("\n".join(lines))
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    (out / "soak.json").write_text(
        json.dumps({"samples": samples, "lost": lost, "wrong": wrong, "sent": len(sent)})
    )
    (out / "soak.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
