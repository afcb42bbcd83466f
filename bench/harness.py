"""Benchmark plumbing: a private Redis, real worker processes, timing statistics."""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from toolfleet import Fleet, Settings
from toolfleet.cli.local import EmbeddedRedis, worker_command

__all__ = ["BENCH", "Procs", "stats", "timed", "with_redis"]

BENCH = Path(__file__).resolve().parent


@contextlib.contextmanager
def with_redis() -> Iterator[Settings]:
    with EmbeddedRedis() as server:
        yield Settings(broker_url=server.url, heartbeat_interval=2.0)


class Procs:
    """Worker processes started for a benchmark, stopped on exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = Path(tempfile.mkdtemp(prefix="toolfleet-bench-"))
        #: more environment for the processes started from now on
        self.extra_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env(), **self.extra_env}

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                env=self.env(),
                cwd=BENCH,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def toolfleet_worker(self, profile: str, name: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, worker_command(profile, name, "WARNING"))

    def toolfleet_workers(self, profile: str, name: str, count: int) -> subprocess.Popen[bytes]:
        """One ``toolfleet worker --count`` process forking ``count`` workers NAME1..n."""
        return self.spawn(
            name, worker_command(profile, name, "WARNING", count=count, log_dir=self.logs)
        )

    def noop_worker(self, name: str, events: bool = True) -> subprocess.Popen[bytes]:
        """A bare Celery worker of ``noop_app`` (task events on, or as the settings say)."""
        return self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "noop_app",
                "worker",
                "--pool=threads",
                "--concurrency=1",
                f"--hostname={name}@%h",
                "--queues=bench.noop",
                *(["--task-events"] if events else []),
                "--without-gossip",
                "--without-mingle",
                "--loglevel=WARNING",
            ],
        )

    def wait_toolfleet(self, fleet: Fleet, count: int, timeout: float = 120) -> None:
        fleet.wait_ready(count, timeout=timeout)

    def stop(self, timeout: float = 15) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def timed(fn: Callable[[], object]) -> float:
    """Milliseconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def stats(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99 and mean of ``samples`` (ms)."""
    ordered = sorted(samples)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "n": len(ordered),
        "p50": pct(0.5),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "mean": statistics.fmean(ordered),
    }
