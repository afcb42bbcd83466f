"""A Redis master, a replica and three sentinels on loopback, for the failover tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

import redis

from toolfleet.cli.local import free_port, redis_server_binary

from ..helpers import eventually

MASTER = "toolfleet-test"


class SentinelGroup:
    """Real ``redis-server`` processes: a master, a replica and three sentinels."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {name: free_port() for name in ("a", "b", "s1", "s2", "s3")}

    @property
    def url(self) -> str:
        """The fleet's ``sentinel://`` URL: every sentinel, ';'-joined."""
        return ";".join(f"sentinel://127.0.0.1:{self.ports[s]}/0" for s in ("s1", "s2", "s3"))

    def _spawn(self, name: str, args: list[str]) -> None:
        with open(self.base / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [redis_server_binary(), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                start_new_session=True,
            )

    def start(self) -> SentinelGroup:
        a, b = self.ports["a"], self.ports["b"]
        common = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
        self._spawn("a", ["--port", str(a), *common])
        self._spawn("b", ["--port", str(b), "--replicaof", "127.0.0.1", str(a), *common])
        for s in ("s1", "s2", "s3"):
            conf = self.base / f"{s}.conf"  # sentinels rewrite their file: one each
            conf.write_text(
                f"port {self.ports[s]}\nbind 127.0.0.1\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {a} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 5000\n"
            )
            self._spawn(s, [str(conf), "--sentinel"])
        # ready: the replica is in sync, every sentinel knows the replica and the others
        eventually(lambda: self.role("b") == "slave" and self._synced(), 30, "replica sync")
        for s in ("s1", "s2", "s3"):
            eventually(lambda s=s: self._sees_all(s), 30, f"sentinel {s} ready")  # type: ignore[misc]
        return self

    def client(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], socket_timeout=2, socket_connect_timeout=2)

    def role(self, name: str) -> str | None:
        try:
            with self.client(name) as c:
                return str(c.info("replication")["role"])
        except redis.RedisError:
            return None

    def _synced(self) -> bool:
        with self.client("b") as c:
            return c.info("replication").get("master_link_status") == "up"

    def _sees_all(self, sentinel: str) -> bool:
        with self.client(sentinel) as c:
            return len(c.sentinel_slaves(MASTER)) == 1 and len(c.sentinel_sentinels(MASTER)) == 2

    def master_port(self) -> int:
        with self.client("s1") as c:
            return int(c.sentinel_get_master_addr_by_name(MASTER)[1])

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
