"""No way in: pickle refused, programs chosen by the operator only, passwords, secrets."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Producer

from toolfleet import Settings
from toolfleet.broker import PROMPT_TASK, shared_queue
from toolfleet.cli.local import EmbeddedRedis, redis_server_binary

from ..integration.procs import Workers, env_for


def test_pickle_message_is_refused_not_executed(workers: Workers, tmp_path: Path) -> None:
    log = tmp_path / "ran.log"
    names = workers.start("echo", TOOLFLEET_ECHO_LOG=str(log))
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


def test_tls_with_rediss(tmp_path: Path) -> None:
    probe = subprocess.run(
        [redis_server_binary(), "--port", "0", "--tls-port", "0"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if "tls" in (probe.stdout + probe.stderr).lower() or probe.returncode != 0:
        pytest.skip("the available redis-server is built without TLS; rediss:// is documented")
