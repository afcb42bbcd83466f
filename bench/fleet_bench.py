"""Helpers shared by throughput.py, startup.py, memory.py, persistent.py and run_all.py.

Not a benchmark itself: the bare no-op Celery app pointed at a benchmark's Redis, Redis
command counters, /proc readers, and the one JSON shape every figure is written in
(``row``), which run_all.py turns into the tables of RESULTS.md.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from harness import BENCH

from toolfleet import Settings

__all__ = [
    "OUT",
    "alive",
    "command_counts",
    "cpu_seconds",
    "exit_on_sigterm",
    "noop_app",
    "print_rows",
    "row",
    "rss_kib",
    "total_calls",
    "wait_pinged",
    "write_json",
]

OUT = BENCH / "out"


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``with`` blocks stop the processes they started."""

    def leave(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def noop_app(settings: Settings) -> Celery:
    """The bare no-op app of ``noop_app.py``, sending to this benchmark's Redis."""
    app: Celery = __import__("noop_app").app
    app.conf.update(broker_url=settings.broker_url, result_backend=settings.result_backend)
    return app


def wait_pinged(app: Celery, count: int, timeout: float = 60, probe: float = 0.05) -> float:
    """Block until ``count`` workers answer ``app.control.ping``; seconds it took.

    A ping sent before a worker listens is lost, so short probes are repeated; the
    returned time is late by at most one ``probe``.
    """
    start = time.monotonic()
    while len(app.control.ping(timeout=probe, limit=count)) < count:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"fewer than {count} workers answered ping in {timeout:g} s")
    return time.monotonic() - start


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per Redis command so far (INFO itself left out)."""
    info = client.info("commandstats")
    return {
        k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if k != "cmdstat_info"
    }


def total_calls(client: redis.Redis) -> int:
    """Redis commands served so far (INFO left out), as bench/health.py counts them."""
    return sum(command_counts(client).values())


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by ``pids`` and their child processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def row(
    figure: str,
    value: float,
    unit: str,
    baseline_label: str | None = None,
    baseline: float | None = None,
    *,
    ratio: float | None = None,
    target: str | None = None,
    passed: bool | None = None,
) -> dict[str, Any]:
    """One figure of a results table: its baseline in the same run, ratio and target.

    ``ratio`` defaults to value / baseline; ``target`` is text (e.g. ``ratio >= 0.9``),
    ``passed`` whether this run met it.
    """
    if ratio is None and baseline:
        ratio = value / baseline
    return {
        "figure": figure,
        "value": value,
        "unit": unit,
        "baseline_label": baseline_label,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "pass": passed,
    }


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    """A small table of ``rows`` on stdout."""
    print(title)
    print(f"{'figure':56}{'value':>10}{'baseline':>10}{'ratio':>8}  target; baseline is")
    for r in rows:
        base = "" if r["baseline"] is None else f"{r['baseline']:.4g}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        verdict = {True: "pass", False: "MISS", None: ""}[r["pass"]]
        target = f"{r['target'] or ''} {verdict}".strip()
        value = f"{r['value']:.4g} {r['unit']}"
        print(
            f"{r['figure'][:55]:56}{value:>10}{base:>10}{ratio:>8}  "
            f"{target + '; ' if target else ''}{r['baseline_label'] or ''}"
        )


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` to bench/out/<name>.json (with the machine it ran on)."""
    data = {"benchmark": name, "cores": os.cpu_count(), "unix_time": time.time(), **data}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
