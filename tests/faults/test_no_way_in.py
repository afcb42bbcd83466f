"""No way in: pickle refused, programs chosen by the operator only, passwords, secrets."""

from __future__ import annotations

import contextlib
import functools
import json
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from kombu import Connection, Exchange, Producer

from toolfleet import Fleet, Settings
from toolfleet.broker import PROMPT_TASK, shared_queue
from toolfleet.cli.local import EmbeddedRedis, free_port, redis_reachable, redis_server_binary
from toolfleet.errors import ConfigError, RedisUnavailable
from toolfleet.parentdeath import die_with_parent

from ..integration.procs import Workers, env_for


def test_pickle_message_is_refused_not_executed(workers: Workers, tmp_path: Path) -> None:
    log = tmp_path / "ran.log"
    names = workers.start("echo", ECHO_TOOL_LOG=str(log))
    workers.wait_ready(names)
    with Connection(workers.settings.broker_url) as conn:
        producer = Producer(conn.channel(), exchange=Exchange("toolfleet.default", "direct"))
        body = pickle.dumps(((), {"text": "pickled prompt"}, {}))
        producer.publish(
            body,
            routing_key=shared_queue("echo"),
            content_type="application/x-python-serialize",
            content_encoding="binary",
            serializer=None,
            headers={"id": "pickled-1", "task": PROMPT_TASK, "lang": "py"},
        )
    time.sleep(2)
    assert workers.fleet.submit("json prompt", "echo").get(timeout=30).output == "json prompt"
    assert log.read_text().splitlines() == ["json prompt"]  # the pickled one never ran
    assert "refusing to deserialize untrusted content of type pickle" in (
        (tmp_path / "echo1.log").read_text().lower()
    )


def test_a_message_cannot_choose_the_program(workers: Workers) -> None:
    names = workers.start("echo")
    before = workers.wait_ready(names)["echo1"]
    sent = workers.fleet.app.send_task(
        PROMPT_TASK,
        queue=shared_queue("echo"),
        kwargs={"text": "hi", "argv": ["bash", "-c", "touch /tmp/pwned"], "profile": "bash"},
    )
    with pytest.raises(TypeError):
        sent.get(timeout=30)
    after = workers.fleet.status("echo")[0]
    assert (after.pid, after.generation) == (before.pid, before.generation)
    assert workers.fleet.submit("hi", "echo").get(timeout=30).output == "hi"


def test_password_protected_redis_end_to_end_and_secrets_stay_out_of_logs(
    tmp_path: Path,
) -> None:
    secret = "s3cret-pass-9f2c"
    with EmbeddedRedis(password=secret) as server:
        settings = Settings(broker_url=server.url, heartbeat_interval=0.5)
        workers = Workers(settings, tmp_path)
        try:
            workers.wait_ready(workers.start("echo"))
            assert workers.fleet.submit("auth ok", "echo").get(timeout=30).output == "auth ok"
            env = env_for(settings, COLUMNS="250")
            status = subprocess.run(
                [sys.executable, "-m", "toolfleet", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert status.returncode == 0 and secret not in status.stdout + status.stderr
            wrong = env_for(
                settings,
                TOOLFLEET_BROKER_URL=server.url.replace(secret, "wrong"),
                TOOLFLEET_RESULT_BACKEND="",
            )
            bad = subprocess.run(
                [sys.executable, "-m", "toolfleet", "status"],
                env=wrong,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert bad.returncode == 1
            assert "refused the credentials" in bad.stderr and "wrong" not in bad.stderr
            assert "Traceback" not in bad.stderr
        finally:
            assert workers.close() == set()
        assert secret not in (tmp_path / "echo1.log").read_text()


# ---- TLS: a redis-server built with TLS, certificates made here, rediss:// end to end ----
def _tls_candidates() -> list[str]:
    """Where a redis-server with TLS may be, in order of preference: Debian's redis-server
    package, any redis-server on PATH, Debian's redis-tools (what ``./run test`` installs:
    ``redis-check-rdb`` is the whole server under another name), the bundled one."""
    found = ["/usr/bin/redis-server", shutil.which("redis-server"), "/usr/bin/redis-check-rdb"]
    with contextlib.suppress(ConfigError):
        found.append(redis_server_binary())
    return [b for b in dict.fromkeys(found) if b and Path(b).is_file()]


def _rejects_tls(binary: str) -> bool:
    """True when ``binary`` is built without TLS: it refuses the ``tls-port`` directive.

    A TLS build accepts it and, listening nowhere, exits. It runs as ``redis-server``
    (argv[0]): the check tools pick their mode from the name they are run as.
    """
    try:
        probe = subprocess.run(
            ["redis-server", "--port", "0", "--tls-port", "0"],
            executable=binary,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except subprocess.TimeoutExpired:  # it accepted the directives and serves
        return False
    return "bad directive" in (probe.stdout + probe.stderr).lower()


def tls_redis_server() -> str | None:
    """The first redis-server (or Redis check tool) built with TLS on this machine."""
    return next((b for b in _tls_candidates() if not _rejects_tls(b)), None)


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA in ``directory``: (certificate, key) as ``NAME.pem``, ``NAME.key``."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        directory,
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-nodes", "-days", "2", "-subj", f"/CN=toolfleet test {name}"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        *("-keyout", str(key), "-out", str(cert)),
    )
    return cert, key


def make_server_cert(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 and localhost signed by ``ca``: (cert, key)."""
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        directory,
        *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr)),
    )
    _openssl(
        directory,
        *("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1])),
        *("-set_serial", "1", "-days", "2", "-extfile", str(ext), "-out", str(cert)),
    )
    return cert, key


def rediss_url(port: int, ca_cert: Path) -> str:
    """A ``rediss://`` URL that checks the server's certificate against ``ca_cert``."""
    ca = quote(str(ca_cert), safe="/")
    return f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"


@contextlib.contextmanager
def tls_redis(
    binary: str, port: int, ca: Path, cert: tuple[Path, Path], directory: Path
) -> Iterator[None]:
    """A redis-server serving only TLS on 127.0.0.1:``port`` (no plain port, no
    client certificates), stopped on exit."""
    argv = ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    argv += ["--tls-cert-file", str(cert[0]), "--tls-key-file", str(cert[1])]
    argv += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    argv += ["--dir", str(directory), "--save", "", "--appendonly", "no", "--daemonize", "no"]
    log = directory / "redis-tls.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            executable=binary,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=functools.partial(die_with_parent, signal.SIGTERM),
        )
    try:
        end = time.monotonic() + 10
        while not redis_reachable(rediss_url(port, ca), timeout=0.5):
            assert proc.poll() is None, f"TLS redis-server exited: {log.read_text()}"
            assert time.monotonic() < end, f"TLS redis-server not up: {log.read_text()}"
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_tls_with_rediss(tmp_path: Path) -> None:
    """Workers, a producer and ``toolfleet status`` on a Redis that speaks only TLS,
    checking its certificate against the test's CA; another CA is refused."""
    binary = tls_redis_server()
    if binary is None:
        pytest.skip(
            "no redis-server built with TLS (tried "
            f"{', '.join(_tls_candidates()) or 'none found'}): ./run test installs "
            "Debian's redis-tools when it runs as root"
        )
    ca = make_ca(tmp_path, "ca")
    other_ca = make_ca(tmp_path, "other-ca")
    server_cert = make_server_cert(tmp_path, ca)
    port = free_port()
    with tls_redis(binary, port, ca[0], server_cert, tmp_path):
        # only TLS gets in: a plain connection to the same port is not answered
        assert not redis_reachable(f"redis://127.0.0.1:{port}/0", timeout=2)

        settings = Settings(broker_url=rediss_url(port, ca[0]), heartbeat_interval=0.5)
        workers = Workers(settings, tmp_path)
        try:
            workers.wait_ready(workers.start("echo"))
            answer = workers.fleet.submit("over tls", "echo").get(timeout=30)
            assert answer.output == "over tls"
            status = subprocess.run(
                [sys.executable, "-m", "toolfleet", "status", "--json"],
                env=env_for(settings, COLUMNS="250"),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert status.returncode == 0, status.stderr
            seen = {r["worker"].split("@")[0]: r["state"] for r in json.loads(status.stdout)}
            assert seen == {"echo1": "ready"}
        finally:
            assert workers.close() == set()

        # a certificate from another CA is refused, in one clear line
        wrong = Fleet(Settings(broker_url=rediss_url(port, other_ca[0])))
        try:
            with pytest.raises(
                RedisUnavailable,
                match=r"(?i)cannot use Redis at rediss:.*certificate verify failed",
            ):
                wrong.status()
        finally:
            wrong.close()
