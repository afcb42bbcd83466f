"""A 1,000-item map with Redis SIGKILLed and started again halfway: with the embedded
Redis's default persistence (append-only file, fsync every second) and without any,
against the same map undisturbed, alternated round by round in one process.

Run: .venv/bin/python bench/redis_restart.py [--rounds 3] [--items 1000] [--workers 2]
Each round of each kind: a fresh Redis (persistent or not) and ``--workers`` echo
workers; the map's items are ``:sleep 0.005 item-N`` in chunks of 16 (the REPLs'
default), 8 messages in flight, the default result timeout. After half the outcomes,
Redis is killed and started again one second later on the same port and data. Figure:
seconds from the first item sent to the last outcome, median of the rounds; every
outcome must be ok and right. Figures: bench/out/redis_restart.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from fleet_bench import print_rows, row, write_json
from harness import Procs

from toolfleet import Fleet, Settings
from toolfleet.cli.local import EmbeddedRedis

KINDS = ("undisturbed", "persistent", "not persistent")


def one_map(kind: str, items: int, workers: int) -> tuple[float, int]:
    """Seconds the map took and how many messages were sent again."""
    server = EmbeddedRedis(
        appendonly=kind != "not persistent", directory=tempfile.mkdtemp(prefix="bench-redis-")
    ).start()
    settings = Settings(broker_url=server.url, heartbeat_interval=1.0)
    try:
        with Procs(settings) as procs, Fleet(settings) as fleet:
            procs.toolfleet_workers("echo", "restart", workers)
            procs.wait_toolfleet(fleet, workers)
            texts = [f":sleep 0.005 item-{i}" for i in range(items)]
            began = time.monotonic()
            run = fleet.map(texts, "echo", chunk=16, in_flight=8)
            wrong = 0
            for n, outcome in enumerate(run, 1):
                ok = outcome.ok and outcome.result is not None
                wrong += not (ok and outcome.result.output.endswith(f"item-{outcome.key}"))
                if n == items // 2 and kind != "undisturbed":
                    assert server.proc is not None
                    server.proc.kill()
                    server.proc.wait()
                    server.proc = None
                    time.sleep(1.0)
                    server.start(timeout=30)
            took = time.monotonic() - began
            resent = run.resent
            if wrong:
                raise SystemExit(f"{kind}: {wrong} items not ok or wrong")
            return took, resent
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    resent: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for r in range(args.rounds):
        for kind in KINDS:
            took, again = one_map(kind, args.items, args.workers)
            seconds[kind].append(took)
            resent[kind].append(again)
            print(f"round {r + 1} {kind}: {took:.1f} s, {again} messages sent again", flush=True)
    base = statistics.median(seconds["undisturbed"])
    rows = [
        row(
            f"{args.items}-item map, Redis restarted halfway, {kind}",
            statistics.median(seconds[kind]),
            "s",
            f"the same map undisturbed, {args.workers} workers",
            base,
        )
        for kind in KINDS[1:]
    ]
    print_rows("A map through a Redis restart (median of rounds)", rows)
    write_json(
        "redis_restart",
        {
            "rows": rows,
            "samples": seconds,
            "resent": resent,
            "items": args.items,
            "workers": args.workers,
        },
    )


if __name__ == "__main__":
    main()
