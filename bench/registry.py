"""Control-plane cost with a full result backend: the worker registry against SCAN.

Run: .venv/bin/python bench/registry.py [--results 1000000] [--workers 100]
Baselines in the same run: the same status read on an empty backend, and the SCAN of
every key that found health records before the registry (kept here for the comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import redis
from harness import BENCH, stats, timed, with_redis

from toolfleet import Fleet
from toolfleet.health import write_health
from toolfleet.keys import HEALTH_PREFIX
from toolfleet.models import InstanceHealth


def scan_read(client: redis.Redis) -> int:
    """How health records were found before the registry: SCAN the backend, then MGET."""
    keys = sorted(client.scan_iter(match=HEALTH_PREFIX + "*", count=1000))
    raws = [raw for raw in client.mget(keys) if raw is not None] if keys else []
    return len([InstanceHealth.model_validate_json(raw) for raw in raws])


def register(client: redis.Redis, workers: int) -> None:
    now = time.time()
    for i in range(workers):
        record = InstanceHealth(
            worker=f"bench{i:03d}@host",
            worker_pid=1000 + i,
            profile=("python", "bash", "echo")[i % 3],
            state="ready",
            started_at=now,
            updated_at=now,
            generation=1,
            prompts_served=i,
            version="bench",
        )
        write_health(client, record, ttl=3600)


def fill(client: redis.Redis, results: int) -> None:
    """``results`` stored results (celery-task-meta-* keys of a realistic size)."""
    value = json.dumps({"status": "SUCCESS", "result": {"output": "2", "ok": True}})
    done = 0
    while done < results:
        pipe = client.pipeline(transaction=False)
        for i in range(done, min(results, done + 20000)):
            pipe.set(f"celery-task-meta-{i:08d}-0000-0000-0000-000000000000", value)
        pipe.execute()
        done = min(results, done + 20000)


def status_cli(env: dict[str, str]) -> float:
    return timed(
        lambda: subprocess.run(
            [sys.executable, "-m", "toolfleet", "status", "--json"],
            env=env,
            check=True,
            capture_output=True,
        )
    )


def p50_ms(fn: object, n: int) -> float:
    return stats([timed(fn) for _ in range(n)])["p50"]  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=100)
    args = parser.parse_args()
    rows: list[tuple[str, float, str, float]] = []
    with with_redis() as settings:
        client = redis.Redis.from_url(settings.result_backend)
        env = {**os.environ, **settings.to_env()}
        with Fleet(settings) as fleet:
            register(client, 10)
            few_empty = p50_ms(fleet.status, 200)
            register(client, args.workers)
            empty = p50_ms(fleet.status, 200)
            empty_scan = p50_ms(lambda: scan_read(client), 20)
            cli_empty = statistics.median(status_cli(env) for _ in range(5))
            t0 = time.monotonic()
            fill(client, args.results)
            print(f"stored {args.results} results in {time.monotonic() - t0:.0f} s")
            assert len(fleet.status()) == args.workers
            full = p50_ms(fleet.status, 200)
            full_scan = p50_ms(lambda: scan_read(client), 5)
            cli_full = statistics.median(status_cli(env) for _ in range(5))
        client.close()
    w, r = args.workers, f"{args.results:,}"
    rows = [
        (f"Fleet.status(), {w} workers, {r} results", full, "same, empty backend", empty),
        (f"Fleet.status(), {w} workers, {r} results", full, f"SCAN + MGET, {r} results", full_scan),
        (f"Fleet.status(), {w} workers, empty backend", empty, "10 workers", few_empty),
        (f"SCAN + MGET, {w} workers, empty backend", empty_scan, "registry read", empty),
        (f"`toolfleet status --json`, {r} results", cli_full, "same, empty backend", cli_empty),
    ]
    lines = [
        "| figure | value | baseline (same run) | baseline value | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {a} | {b:.2f} ms | {c} | {d:.2f} ms | {b / d:.3f} |" for a, b, c, d in rows]
    print("\n".join(lines))
    out = BENCH / "out"
    out.mkdir(exist_ok=True)
    (out / "registry.json").write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
