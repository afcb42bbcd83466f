"""A tool's resource limits: its processes, memory and CPU in a cgroup of its own where the
host lets the worker make one (v2, or v1's pids, memory and cpu controllers), else
``setrlimit`` (processes and memory; a CPU rate has no rlimit)."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CPU_PERIOD_US", "ToolLimits"]

log = logging.getLogger(__name__)

_ROOT = Path("/sys/fs/cgroup")
#: the scheduler period a CPU quota is given in (the kernel's default)
CPU_PERIOD_US = 100_000


def _own_groups() -> dict[str, str]:
    """This process's cgroup path by controller ("" for the v2 hierarchy)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                found[name] = path
    return found


def _made(path: Path, settings: dict[str, str]) -> bool:
    """Make the group ``path`` and write ``settings`` into it; False (nothing left) if
    the host refuses."""
    try:
        path.mkdir()
    except OSError:
        return False
    try:
        for name, value in settings.items():
            (path / name).write_text(value)
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        return False
    return True


def _count(path: Path, key: str) -> int:
    """The counter ``key`` of a ``key value`` lines file (0 when absent)."""
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


@dataclass
class ToolLimits:
    """The limits of one tool process and everything it starts: ``memory`` bytes,
    ``processes`` (tasks) and ``cpus`` (cores at once). :meth:`make` puts them in a
    cgroup of its own where the host lets it (``groups``: none means setrlimit); the
    tool enters it before it runs (:meth:`enter`, in the child), and :meth:`exceeded`
    tells afterwards which limit it hit."""

    memory: int | None = None
    processes: int | None = None
    groups: list[Path] = field(default_factory=list)
    cpus: float | None = None

    @classmethod
    def make(
        cls, memory: int | None, processes: int | None, name: str, *, cpus: float | None = None
    ) -> ToolLimits:
        """Limits for one start of a tool named ``name``; nothing to make without any."""
        limits = cls(memory, processes, cpus=cpus)
        if memory is None and processes is None and cpus is None:
            return limits
        limits.groups = cls._groups(memory, processes, cpus, name)
        if cpus is not None and not limits.groups:
            log.warning("%s: no cgroup could be made here: its CPU limit is not applied", name)
        return limits

    @staticmethod
    def _groups(
        memory: int | None, processes: int | None, cpus: float | None, name: str
    ) -> list[Path]:
        """The cgroups made for the limits ([] where the host refuses)."""
        quota = None if cpus is None else max(1000, int(cpus * CPU_PERIOD_US))
        own = _own_groups()
        leaf = f"toolfleet-{name}-{os.getpid()}-{secrets.token_hex(3)}"
        if (_ROOT / "cgroup.controllers").is_file():  # the v2 hierarchy alone
            wanted = {
                **({"memory.max": str(memory)} if memory else {}),
                **({"pids.max": str(processes)} if processes else {}),
                **({"cpu.max": f"{quota} {CPU_PERIOD_US}"} if quota else {}),
            }
            group = _ROOT / own.get("", "/").lstrip("/") / leaf
            return [group] if _made(group, wanted) else []
        made: list[Path] = []
        for controller, setting, value in (
            ("pids", "pids.max", processes),
            ("memory", "memory.limit_in_bytes", memory),
            ("cpu", "cpu.cfs_quota_us", quota),
        ):
            if value is None:
                continue
            group = _ROOT / controller / own.get(controller, "/").lstrip("/") / leaf
            if not _made(group, {setting: str(value)}):
                for done in made:
                    with contextlib.suppress(OSError):
                        done.rmdir()
                return []
            made.append(group)
        return made

    def enter(self) -> None:
        """In the tool's process before it runs: into the groups, or rlimits without."""
        for group in self.groups:
            (group / "cgroup.procs").write_text(str(os.getpid()))
        if self.groups:
            return
        if self.memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory, self.memory))
        if self.processes is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.processes, self.processes))

    def exceeded(self) -> str | None:
        """Which limit the tool hit, in words ("process limit 64 reached"), or None."""
        hit = []
        for group in self.groups:
            forks_refused = _count(group / "pids.events", "max")
            oom = _count(group / "memory.events", "oom_kill") or _count(
                group / "memory.oom_control", "oom_kill"
            )
            with contextlib.suppress(OSError, ValueError):
                oom = oom or int((group / "memory.failcnt").read_text() or 0)
            if forks_refused and self.processes is not None:
                hit.append(f"process limit {self.processes} reached")
            if oom and self.memory is not None:
                hit.append(f"memory limit {self.memory // (1 << 20)} MiB reached")
        return "; ".join(dict.fromkeys(hit)) or None

    def remove(self) -> None:
        """SIGKILL whatever is left in the groups (a fork bomb's strays), then remove
        them."""
        end = time.monotonic() + 2.0
        for group in self.groups:
            while time.monotonic() < end:
                try:
                    pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
                except (OSError, ValueError):
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)
            with contextlib.suppress(OSError):
                group.rmdir()
        self.groups = []
