"""Helpers for integration tests: real worker processes and process-tree checks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from toolfleet import Fleet, InstanceHealth, Settings
from toolfleet.cli.local import worker_command

from ..helpers import eventually, wait_until


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a child process exactly ``settings``."""
    return {**os.environ, **settings.to_env(), **extra}


def map_steps_in_background(
    settings: Settings, repo: Path, profile: str, steps: list[str], names: list[str]
) -> subprocess.Popen[str]:
    """``toolfleet map -p PROFILE --json --apply --retries 2 --in-flight 3 -s STEP...``
    over ``names`` in ``repo``, running: its output piped, as text."""
    argv = [sys.executable, "-m", "toolfleet", "map", "-p", profile, "--json", "--apply"]
    argv += ["--retries", "2", "--in-flight", "3", *[a for s in steps for a in ("-s", s)]]
    return subprocess.Popen(
        [*argv, *names],
        cwd=repo,
        env=env_for(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def fleet_thread(fleet: Fleet, job: Callable[[], object]) -> threading.Thread:
    """A thread (not started) running ``job`` on ``fleet``, then closing the result
    backend Celery made for it (:meth:`Fleet.release_thread`): left to the garbage
    collector, its sockets are reported unclosed by whichever test runs then."""

    def run() -> None:
        try:
            job()
        finally:
            fleet.release_thread()

    return threading.Thread(target=run)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and pid_alive(child):
                found.add(child)
                todo.append(child)
    return found


def wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """Wait until no pid of ``pids`` runs; return those still running."""
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout)
    return {p for p in pids if pid_alive(p)}


class Workers:
    """Real ``toolfleet worker`` processes for one test fleet."""

    def __init__(self, settings: Settings, log_dir: Path, work_dir: Path | None = None) -> None:
        self.settings = settings
        self.log_dir = log_dir
        #: the workers' folder, where their confined tools may write and see (default
        #: ``log_dir``)
        self.work_dir = work_dir or log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.fleet = Fleet(settings)

    def start(
        self,
        profile: str,
        count: int = 1,
        prefix: str | None = None,
        cwd: str | None = None,
        **env: str,
    ) -> list[str]:
        names = []
        base = prefix or profile
        for _ in range(count):
            name = f"{base}{sum(1 for n in self.procs if n.rstrip('0123456789') == base) + 1}"
            with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps a copy
                self.procs[name] = subprocess.Popen(
                    worker_command(profile, name),
                    env=env_for(self.settings, **env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=cwd or str(self.work_dir),
                )
            names.append(name)
        return names

    def wait_ready(self, names: list[str], timeout: float = 60.0) -> dict[str, InstanceHealth]:
        """Wait until the workers' records say ready and the workers answer remote control
        (sessions, inspect): a worker can publish its ready record a second before it
        listens to broadcasts, and a broadcast it does not hear is lost."""
        ready: dict[str, InstanceHealth] = {}

        def all_ready() -> dict[str, InstanceHealth] | None:
            ready.clear()
            ready.update(
                (h.worker.split("@")[0], h) for h in self.fleet.status() if h.state == "ready"
            )
            if all(n in ready for n in names):
                return {n: ready[n] for n in names}
            dead = [n for n in names if self.procs[n].poll() is not None]
            assert not dead, f"workers exited: {dead}; logs: {self.log_dir}"
            return None

        records = eventually(
            all_ready, timeout, lambda: f"not ready: {set(names) - set(ready)}", interval=0.1
        )
        nodes = [r.worker for r in records.values()]
        answering: set[str] = set()

        def all_answer() -> bool:
            replies = self.fleet.app.control.ping(destination=nodes, timeout=1.0)
            answering.update(node for reply in replies for node in reply)
            return answering >= set(nodes)

        eventually(all_answer, timeout, lambda: f"no answer from {set(nodes) - answering}")
        return records

    def node(self, name: str) -> str:
        return next(h.worker for h in self.fleet.status() if h.worker.split("@")[0] == name)

    def tree(self) -> set[int]:
        pids: set[int] = set()
        for proc in self.procs.values():
            pids |= {proc.pid} | descendants(proc.pid)
        return pids

    def stop(self, name: str | None = None, sig: int = signal.SIGTERM) -> set[int]:
        """Signal workers; return the processes (workers, tools) still running after 15 s."""
        names = [name] if name else list(self.procs)
        pids = set()
        for n in names:
            proc = self.procs[n]
            pids |= {proc.pid} | descendants(proc.pid)
            if proc.poll() is None:
                proc.send_signal(sig)
        for n in names:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.procs[n].wait(15)
        left = wait_gone(pids, 5)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for n in names:
            if self.procs[n].poll() is None:
                self.procs[n].kill()
                self.procs[n].wait()
            if name is not None:
                del self.procs[n]
        return left

    def close(self) -> set[int]:
        left = self.stop() if self.procs else set()
        self.procs.clear()
        self.fleet.close()
        return left


def confined_as(records: dict[str, InstanceHealth], mode: str) -> None:
    """Every record says its tool runs confined as ``mode`` (``auto``, ``strict``), or,
    where this host cannot confine, says why not."""
    from toolfleet.tool.sandbox import sandbox_support

    binary, why = sandbox_support()
    expected = mode if binary is not None else f"none: {why}"
    assert {r.sandbox for r in records.values()} == {expected}
