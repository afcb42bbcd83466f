"""Test hosts: Linux network namespaces on a private bridge, reachable from the tests."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from .alloc import (
    PREFIX,
    allocate,
    bridge_name,
    ip,
    kill_namespace,
    links,
    namespace_pids,
    namespaces,
    release,
    signal_namespace,
)

__all__ = ["Host", "Net", "can_connect"]

IFNAMSIZ = 15  # the longest interface name Linux takes
HOST_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


def can_connect(ip: str, port: int, timeout: float = 1.0) -> bool:
    """True when a TCP connection to ``ip:port`` is accepted within ``timeout`` s."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError:
    sys.exit(1)
"""


class Host:
    """One test host: a network namespace with ``eth0`` at ``ip`` on its Net's bridge,
    and a directory of its own (logs, data). Made by ``Net.host``."""

    def __init__(self, net: Net, name: str, ns: str, veth: str, ip: str, dir: Path) -> None:
        self.net = net
        self.name = name
        self.ns = ns
        self.veth = veth  # the root-side end: down = the host is cut off
        self.ip = ip
        self.dir = dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def __repr__(self) -> str:
        return f"Host({self.name!r}, ns={self.ns!r}, ip={self.ip!r})"

    def _argv(self, argv: Sequence[str | Path]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *(str(arg) for arg in argv)]

    @staticmethod
    def _env(env: Mapping[str, str] | None) -> dict[str, str] | None:
        return None if env is None else {**os.environ, **env}

    def popen(
        self,
        argv: Sequence[str | Path],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in this host (a session of its own, no stdin), its output
        appended to ``dir/<log>.log`` (default: the program's name); ``env`` is added
        to this process's environment. The host keeps the Popen (reaped on close)."""
        name = log or Path(str(argv[0])).name
        with open(self.dir / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(
                self._argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd or self.dir,
                env=self._env(env),
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in this host to the end, its output captured as text; with
        ``check``, a non-zero exit raises CalledProcessError (its stderr in the message).
        ``env`` is added to this process's environment."""
        done = subprocess.run(
            self._argv(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=cwd or self.dir,
            env=self._env(env),
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode,
                [*map(str, argv), f"(in {self.name}; stderr: {done.stderr.strip()[-2000:]})"],
                done.stdout,
                done.stderr,
            )
        return done

    def pids(self) -> set[int]:
        """The processes now in this host (``ip netns pids``)."""
        return namespace_pids(self.ns)

    def reachable(self, other_ip: str, port: int, timeout: float = 1.0) -> bool:
        """True when a TCP connection from this host to ``other_ip:port`` is accepted
        within ``timeout`` s."""
        argv = [sys.executable, "-c", _PROBE, other_ip, str(port), str(timeout)]
        return self.run(argv, timeout=timeout + 30, check=False).returncode == 0

    def cut(self) -> None:
        """Unplug the host: its link to the bridge goes down (its processes go on)."""
        ip("link", "set", "dev", self.veth, "down")

    def restore(self) -> None:
        """Plug the host back in after ``cut``."""
        ip("link", "set", "dev", self.veth, "up")

    def freeze(self) -> set[int]:
        """SIGSTOP every process in the host; those processes."""
        return signal_namespace(self.ns, signal.SIGSTOP)

    def thaw(self) -> set[int]:
        """SIGCONT every process in the host; those processes."""
        return signal_namespace(self.ns, signal.SIGCONT)

    def kill(self, timeout: float = 10.0) -> None:
        """Crash the host: SIGKILL every process in it, wait until none is left, and
        reap the ones this host started."""
        kill_namespace(self.ns, timeout)
        self.reap(timeout)

    def reap(self, timeout: float = 10.0) -> None:
        """Wait for the processes ``popen`` started that have ended or are ending."""
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)


class Net:
    """A private /24 (``10.77.<k>.0/24``) on bridge ``tfbr<k>``, whose ``.1`` is the
    root namespace's, so the tests reach every host directly. Hosts come from ``host``;
    ``close`` (or leaving the ``with`` block, or the interpreter's exit) tears it all
    down. Several Nets, in one process or several, can exist at once."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.hosts: dict[str, Host] = {}
        self.closed = False
        self.k = allocate()
        atexit.register(self.close)
        self.bridge = bridge_name(self.k)
        self.subnet = f"{PREFIX}.{self.k}.0/24"
        self.gateway = f"{PREFIX}.{self.k}.1"  # the root namespace's address on it
        try:
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            ip("link", "set", "dev", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"Net({self.subnet}, hosts={list(self.hosts)})"

    def __enter__(self) -> Net:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _veth(self, name: str) -> str:
        """A root-side interface name for host ``name``: ``tf<k><name>`` cut to the
        limit, made unique with a number when cutting makes it clash."""
        taken = {host.veth for host in self.hosts.values()}
        veth = f"tf{self.k}{name}"[:IFNAMSIZ]
        number = 0
        while veth in taken:
            number += 1
            veth = f"tf{self.k}{name}"[: IFNAMSIZ - len(str(number))] + str(number)
        return veth

    def host(self, name: str) -> Host:
        """A new host ``name`` (a lowercase letter, then letters, digits, '-'): its
        namespace ``tf<k>-<name>`` with ``lo`` up and ``eth0`` at the next address
        (.2, .3, ...), and its directory ``base/<name>``."""
        if self.closed:
            raise RuntimeError(f"{self!r} is closed")
        if not HOST_NAME.fullmatch(name):
            raise ValueError(f"bad host name {name!r}: want {HOST_NAME.pattern}")
        if name in self.hosts:
            raise ValueError(f"{self!r} has a host {name!r} already")
        number = len(self.hosts) + 2
        if number > 254:
            raise RuntimeError(f"{self!r} is full")
        ns = f"tf{self.k}-{name}"
        directory = self.base / name
        host = Host(self, name, ns, self._veth(name), f"{PREFIX}.{self.k}.{number}", directory)
        self.hosts[name] = host  # before anything is made: close() undoes a half-made host
        directory.mkdir(parents=True, exist_ok=True)
        ip("netns", "add", ns)
        ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", "dev", host.veth, "master", self.bridge, "up")
        ip("-n", ns, "link", "set", "dev", "lo", "up")
        ip("-n", ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "dev", "eth0", "up")
        return host

    def close(self) -> None:
        """Tear everything down: every host's processes (killed, waited for), its
        namespace and veth, then the bridge (which frees the subnet). Safe to call
        again, and after a failure half-way through anything."""
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        problems: list[str] = []
        for host in self.hosts.values():
            try:
                host.kill()
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                problems.append(f"{host.name}: {error}")
            ip("netns", "del", host.ns, check=False)
        present = links()
        for host in self.hosts.values():
            if host.veth in present:  # gone with its namespace's end, as a rule
                ip("link", "del", host.veth, check=False)
        release(self.k)
        left = [h.ns for h in self.hosts.values() if h.ns in namespaces()]
        left += [n for n in [self.bridge, *(h.veth for h in self.hosts.values())] if n in links()]
        if left:
            problems.append(f"still there: {left}")
        if problems:
            raise RuntimeError(f"{self!r} not closed cleanly: {'; '.join(problems)}")
