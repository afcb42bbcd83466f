"""Leases without broadcast: sessions opened per second, Redis commands a session and the
workers' CPU a session, at 8, 32 and 128 workers of the echo tool, through each worker's
own lease mailbox (now) against Celery's broadcast to one destination (before).

Run: .venv/bin/python bench/leases.py [--sizes 8,32,128] [--sessions 100]
One private Redis; for each fleet size the workers are started (``toolfleet worker
--count N``), then, interleaved round by round, ``--sessions`` sessions are opened and
closed one after another by one producer: through ``Fleet.session`` (the mailbox), and
through the same lease key and Celery's ``broadcast("tool_lease", destination=[w])``
(what sessions did before; the workers still answer it). Figures per way and size:
sessions/s, Redis commands a session (INFO commandstats before and after), and the CPU
seconds all workers spent a session (from /proc: a broadcast is decoded by every worker),
both less the fleet's background (heartbeats, mailbox polls) measured just before.
Figures go to bench/out/leases.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from harness import BENCH, Procs, with_redis

from toolfleet import Fleet
from toolfleet.client import leases


def commands(client: Any) -> int:
    """Redis commands served so far."""
    return sum(int(v["calls"]) for v in client.info("commandstats").values())


def worker_cpu(root: int) -> float:
    """CPU seconds the process ``root`` and its children have used."""
    proc = psutil.Process(root)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def by_mailbox(fleet: Fleet) -> None:
    with fleet.session("echo", wait=30):
        pass


def by_broadcast(fleet: Fleet) -> None:
    """A session's lease and release as they were made before: the lease key, then a
    broadcast to one destination (every worker receives and decodes it)."""
    client = fleet.app.backend.client
    session = uuid.uuid4().hex[:16]
    end = time.monotonic() + 30
    while time.monotonic() < end:
        for record in leases.unleased(client, fleet.status("echo")):
            if record.session is not None or not leases.acquire(client, record.worker, session, 60):
                continue
            replies = fleet.app.control.broadcast(
                "tool_lease",
                arguments={"session": session},
                reply=True,
                destination=[record.worker],
                timeout=5.0,
            )
            answer = next((r[record.worker] for r in replies if record.worker in r), None)
            if answer and "ok" in answer:
                leases.release(client, record.worker, session)
                fleet.app.control.broadcast(
                    "tool_release", arguments={"session": session}, destination=[record.worker]
                )
                return
            leases.release(client, record.worker, session)
        time.sleep(0.05)
    raise RuntimeError("no instance leased within 30 s")


def background(fleet: Fleet, root: int, seconds: float = 2.0) -> tuple[float, float]:
    """Redis commands and worker CPU seconds a second with no session: the heartbeats
    and mailbox polls of the fleet, subtracted from each measurement."""
    client = fleet.app.backend.client
    cmds, cpu = commands(client), worker_cpu(root)
    time.sleep(seconds)
    return (commands(client) - cmds) / seconds, (worker_cpu(root) - cpu) / seconds


def measure(
    fleet: Fleet, root: int, way: Callable[[Fleet], None], sessions: int
) -> dict[str, float]:
    client = fleet.app.backend.client
    idle_cmds, idle_cpu = background(fleet, root)
    before_cmds, before_cpu = commands(client), worker_cpu(root)
    started = time.perf_counter()
    for _ in range(sessions):
        way(fleet)
    elapsed = time.perf_counter() - started
    time.sleep(1.0)  # the workers' side of the last release
    window = time.perf_counter() - started
    cmds = commands(client) - before_cmds - idle_cmds * window
    cpu = worker_cpu(root) - before_cpu - idle_cpu * window
    return {
        "sessions_per_s": round(sessions / elapsed, 2),
        "redis_commands_per_session": round(cmds / sessions, 1),
        "worker_cpu_ms_per_session": round(cpu * 1000 / sessions, 2),
        "background_commands_per_s": round(idle_cmds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,32,128")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "leases.json")
    args = parser.parse_args()
    figures: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} cores"}
    for size in [int(s) for s in args.sizes.split(",")]:
        with with_redis() as settings, Procs(settings) as procs, Fleet(settings) as fleet:
            root = procs.toolfleet_workers("echo", f"lease{size}-", size).pid
            procs.wait_toolfleet(fleet, size, timeout=600)
            time.sleep(3)  # the start-up's own traffic settles
            rows: dict[str, list[dict[str, float]]] = {"mailbox": [], "broadcast": []}
            for _ in range(args.rounds):
                rows["mailbox"].append(measure(fleet, root, by_mailbox, args.sessions))
                rows["broadcast"].append(measure(fleet, root, by_broadcast, args.sessions))
            best = {way: max(r, key=lambda x: x["sessions_per_s"]) for way, r in rows.items()}
            figures[str(size)] = {"rounds": rows, "best": best}
            print(size, json.dumps(best), flush=True)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
