"""Runs workers: one, or several of a profile forked from one warm interpreter.

Every worker is its own process holding one tool. Starting one costs about a second of
CPU, nearly all of it importing Celery, kombu and toolfleet; forking the workers from a
process that has imported them once lets a fleet of N start in about the time of one
(see ``bench/startup.py``). The launcher forwards SIGTERM/SIGINT to its workers, starts
a worker again when it dies (not when it was told to stop), and exits when all have.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType

from toolfleet.parentdeath import die_with_parent

__all__ = ["preload", "run_launcher", "start_worker"]

_QUICK_DEATH = 5.0  # a worker dying sooner than this after its start counts as a crash
_MAX_QUICK_DEATHS = 3


def start_worker(profile: str, node: str, loglevel: str) -> None:
    """Run one worker in this process until it stops; exits with the worker's code.

    The worker is built directly rather than through the ``celery`` command line, which
    imports every installed Celery CLI plugin (Flower, a REPL, pkg_resources) first:
    hundreds of modules a worker never uses.
    """
    from celery.utils.log import mlevel
    from celery.utils.nodenames import default_nodename, host_format

    from toolfleet.broker import app, shared_queue

    if "@" not in node:
        node += "@%h"
    worker = app.Worker(
        hostname=host_format(default_nodename(node)),
        pool_cls="threads",
        concurrency=1,
        queues=[shared_queue(profile)],
        # None: the app's worker_send_task_events (TOOLFLEET_TASK_EVENTS) decides
        task_events=None,
        without_gossip=True,
        without_mingle=True,
        loglevel=mlevel(loglevel),
        profile=profile,
    )
    worker.start()
    sys.exit(worker.exitcode)


# what a worker imports: importing it once in the launcher spares each forked worker
_PRELOAD = (
    "celery.apps.worker",
    "celery.backends.redis",
    "celery.concurrency.thread",
    "celery.events",
    "celery.worker.consumer",
    "kombu.transport.redis",
    "toolfleet.broker",
    "toolfleet.workers.tasks",
    "toolfleet.workers.checking",
    "toolfleet.tool.instance",
    "toolfleet.workers.steps",
    "toolfleet.workers.reconnect",
)


def preload() -> None:
    """Import what a worker imports, so that forked workers skip it."""
    for name in _PRELOAD:
        importlib.import_module(name)


def _child(profile: str, name: str, loglevel: str, log_dir: Path | None) -> int:
    """The forked worker: its own log file, default signals, dies with the launcher."""
    die_with_parent(signal.SIGTERM)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    if log_dir is not None:
        fd = os.open(log_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        start_worker(profile, name, loglevel)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def run_launcher(profile: str, names: list[str], loglevel: str, log_dir: Path | None) -> int:
    """Fork one worker per name and look after them; returns when all have exited."""
    preload()
    children: dict[int, tuple[str, float]] = {}
    quick_deaths: dict[str, int] = {}
    stopping: list[int] = []

    def spawn(name: str) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(profile, name, loglevel, log_dir)
            finally:
                os._exit(code)
        children[pid] = (name, time.monotonic())
        print(f"worker {name}: pid {pid}", flush=True)

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for name in names:
        spawn(name)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        name, started = children.pop(pid)
        why = (
            f"killed by signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        if stopping:
            print(f"worker {name}: stopped ({why})", flush=True)
            continue
        quick = time.monotonic() - started < _QUICK_DEATH
        quick_deaths[name] = quick_deaths.get(name, 0) + 1 if quick else 0
        if quick_deaths[name] >= _MAX_QUICK_DEATHS:
            print(f"worker {name}: {why}; died {_MAX_QUICK_DEATHS} times at start, given up")
            continue
        print(f"worker {name}: {why}; starting it again", flush=True)
        time.sleep(0.5 if quick else 0.0)
        spawn(name)
    return 0 if stopping else 1
