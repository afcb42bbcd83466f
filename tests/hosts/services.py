"""Services on a test host: Redis with Sentinels, and a git daemon serving one repo."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import redis

from tests.helpers import eventually
from toolfleet.cli.local import redis_server_binary

from .net import Host

__all__ = ["MASTER", "GitHost", "RedisHost"]

MASTER = "toolfleet"  # the master's name in the sentinels
MASTER_PORT = 6379
REPLICA_PORT = 6380
SENTINEL_PORTS = (26379, 26380, 26381)
GIT_PORT = 9418


class RedisHost:
    """On one host: a Redis master (6379), its replica (6380) and three Sentinels
    (26379-26381, quorum 2), all bound to the host's address; no persistence."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # port: its redis-server

    @property
    def url(self) -> str:
        """The fleet's ``sentinel://`` URL: every sentinel, ';'-joined, db 0."""
        return ";".join(f"sentinel://{self.host.ip}:{port}/0" for port in SENTINEL_PORTS)

    def _spawn(self, port: int, conf: str, *args: str) -> None:
        """Write ``redis-<port>.conf`` and start a redis-server on it, logging to
        ``redis-<port>.log`` in the host's directory."""
        path = self.host.dir / f"redis-{port}.conf"  # a sentinel rewrites its own
        path.write_text(f"port {port}\nbind {self.host.ip}\nprotected-mode no\n{conf}")
        argv = [redis_server_binary(), str(path), *args]
        self.procs[port] = self.host.popen(argv, log=f"redis-{port}")

    def start(self) -> RedisHost:
        """Start every server; return once the replica is in sync and every sentinel
        knows the replica and the two other sentinels."""
        ip = self.host.ip
        store = f'save ""\nappendonly no\ndir {self.host.dir}\n'
        self._spawn(MASTER_PORT, store + f"dbfilename redis-{MASTER_PORT}.rdb\n")
        self._spawn(
            REPLICA_PORT,
            store + f"dbfilename redis-{REPLICA_PORT}.rdb\nreplicaof {ip} {MASTER_PORT}\n",
        )
        for port in SENTINEL_PORTS:
            self._spawn(
                port,
                f"dir {self.host.dir}\n"
                f"sentinel monitor {MASTER} {ip} {MASTER_PORT} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 5000\n",
                "--sentinel",
            )
        eventually(self._synced, 30, f"the replica on {self.host.name} in sync")
        for port in SENTINEL_PORTS:
            eventually(
                lambda port=port: self._sees_all(port),  # type: ignore[misc]
                30,
                f"sentinel {port} on {self.host.name} knowing the replica and the others",
            )
        return self

    def _client(self, port: int) -> redis.Redis:
        """A client of the server on ``port`` of this host."""
        return redis.Redis(host=self.host.ip, port=port, socket_timeout=2, socket_connect_timeout=2)

    def _synced(self) -> bool:
        """True when the replica is a replica whose link to the master is up."""
        try:
            with self._client(REPLICA_PORT) as c:
                info = c.info("replication")
        except redis.RedisError:
            return False
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    def _sees_all(self, port: int) -> bool:
        """True when the sentinel on ``port`` knows one replica and two sentinels."""
        try:
            with self._client(port) as c:
                replicas = c.sentinel_slaves(MASTER)
                sentinels = c.sentinel_sentinels(MASTER)
        except redis.RedisError:
            return False
        return len(replicas) == 1 and len(sentinels) == 2

    def master_addr(self) -> tuple[str, int]:
        """The master's address, as the first sentinel that answers has it."""
        errors: list[str] = []
        for port in SENTINEL_PORTS:
            try:
                with self._client(port) as c:
                    found = c.sentinel_get_master_addr_by_name(MASTER)
            except redis.RedisError as error:
                errors.append(f"{port}: {error}")
                continue
            if found:
                host = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
                return host, int(found[1])
            errors.append(f"{port}: no master {MASTER!r}")
        raise RuntimeError(f"no sentinel on {self.host.name} gave the master: {errors}")

    def kill_master(self) -> int:
        """SIGKILL the redis-server that is the master now; its port."""
        port = self.master_addr()[1]
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        return port

    def client(self) -> redis.Redis:
        """A client of the current master (the caller closes it)."""
        return self._client(self.master_addr()[1])

    def stop(self) -> None:
        """SIGKILL every server this started and wait for it."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)


def _git(*args: str | Path, timeout: float = 60) -> str:
    """Run ``git ARGS`` here (the root namespace); its output (CalledProcessError,
    git's message in it, if it fails)."""
    argv = ["git", *map(str, args)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(
            done.returncode, [*argv, f"(stderr: {done.stderr.strip()})"], done.stdout
        )
    return done.stdout


class GitHost:
    """On one host: a bare repository ``repo.git`` served by ``git daemon`` on port
    9418 of the host's address, anyone allowed to fetch and push."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.srv = host.dir / "srv"
        self.repo = self.srv / "repo.git"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The repository's ``git://`` URL."""
        return f"git://{self.host.ip}/repo.git"

    def start(self, seed: Path) -> GitHost:
        """Make the bare repository with ``seed``'s branch main (a local repository with
        a commit on main) pushed into it, start the daemon, and return once
        ``git ls-remote`` over git:// answers."""
        self.srv.mkdir(parents=True, exist_ok=True)
        _git("init", "--quiet", "--bare", "--initial-branch=main", self.repo)
        _git("-C", self.repo, "config", "daemon.receivepack", "true")
        _git("-C", seed, "push", "--quiet", self.repo, "main:main")
        return self.serve()

    def serve(self) -> GitHost:
        """Start the daemon (again, after :meth:`stop`); return once it answers."""
        argv = [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--informative-errors",
            "--enable=receive-pack",
            f"--base-path={self.srv}",
            f"--listen={self.host.ip}",
            f"--port={GIT_PORT}",
            str(self.srv),
        ]
        self.proc = self.host.popen(argv, log="git-daemon")
        eventually(self._answers, 30, f"git daemon on {self.host.name} answering")
        return self

    def _answers(self) -> bool:
        """True when ``git ls-remote`` of the URL lists main (from the root namespace)."""
        try:
            return "refs/heads/main" in _git("ls-remote", self.url, timeout=10)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False

    def branches(self) -> dict[str, str]:
        """The bare repository's branches (name without refs/heads/: sha), read on disk."""
        out = _git(
            "-C", self.repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"
        )
        pairs = (line.split() for line in out.splitlines() if line.strip())
        return {ref.removeprefix("refs/heads/"): sha for ref, sha in pairs}

    def has_commit(self, sha: str) -> bool:
        """True when the bare repository holds commit ``sha`` (read on disk)."""
        done = subprocess.run(
            ["git", "-C", str(self.repo), "cat-file", "-e", f"{sha}^{{commit}}"],
            capture_output=True,
            timeout=30,
        )
        return done.returncode == 0

    def stop(self) -> None:
        """SIGKILL the daemon and the children it forked (its process group)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
