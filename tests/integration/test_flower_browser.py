"""Flower in a real browser, on a fleet behind a password-protected Redis: prompts are
readable, failed answers are failures, and no page (nor any record or log) shows the
password."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis, flower_command, free_port
from toolfleet.keys import HEALTH_PREFIX

from ..helpers import eventually, wait_until
from .browser import browser_page
from .procs import Workers, env_for

SECRET = "fl0wer-s3cret-7d1e"
#: Flower's credentials (toolfleet's Flower always has some)
LOGIN = {"username": "ops", "password": "flower-login-4b2"}


def test_flower_shows_prompts_and_failures_and_never_the_password(tmp_path: Path) -> None:
    with EmbeddedRedis(password=SECRET) as server:
        settings = Settings(broker_url=server.url, heartbeat_interval=0.5)
        workers = Workers(settings, tmp_path)
        port = free_port()
        flower_log = tmp_path / "flower.log"
        with open(flower_log, "wb") as log:
            flower = subprocess.Popen(
                flower_command(port),
                env=env_for(settings, FLOWER_BASIC_AUTH="ops:" + LOGIN["password"]),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            workers.wait_ready(workers.start("python") + workers.start("bash"))
            _check_flower(workers, port, tmp_path)
        finally:
            flower.terminate()
            flower.wait(10)
            assert workers.close() == set()
        logs = [flower_log, *tmp_path.glob("*.log")]
        assert len(logs) >= 3
        for path in logs:
            assert SECRET not in path.read_text(errors="replace"), path


def _check_flower(workers: Workers, port: int, tmp_path: Path) -> None:
    fleet = workers.fleet
    base = f"http://127.0.0.1:{port}"
    with browser_page(http_credentials=LOGIN) as page:
        eventually(lambda: _loads(page, base + "/tasks"), 60, "Flower", interval=0.2)

        def flowing() -> bool:  # Flower knows only tasks sent after its receiver started
            probe = fleet.submit("'probe'", "python")
            probe.get(timeout=30)
            page.goto(base + "/tasks")
            return _rows(page, "'probe'", 3) != []

        eventually(flowing, 60, "Flower's event stream", interval=0.2)
        good = fleet.submit("sum(range(10))", "python")
        zero = fleet.submit("1/0", "python")
        false = fleet.submit("false", "bash")
        assert good.get(timeout=30).output == "45"
        # a failed answer is still an answer for get(): the whole PromptResult
        failed = zero.get(timeout=30)
        assert not failed.ok and "ZeroDivisionError" in failed.output
        shell = false.get(timeout=30)
        assert not shell.ok and shell.exit_status == 1

        page.goto(base + "/tasks")
        row = _rows(page, "'sum(range(10))'", 20)[0]
        assert "SUCCESS" in row and "ok: 45" in row
        row = _rows(page, "'1/0'", 20)[0]
        assert "FAILURE" in row and "ZeroDivisionError: division by zero" in row
        row = _rows(page, "'false'", 20)[0]
        assert "FAILURE" in row and "exit status 1" in row
        page.screenshot(path=str(tmp_path / "flower-tasks.png"), full_page=True)

        # the workers page counts the two failures (Flower's Failed counter)
        page.goto(base + "/workers")
        eventually(
            lambda: re.search(r"Failed\s*2\b", page.inner_text("body")),
            30,
            "Failed counter 2",
            interval=0.2,
        )

        pages = ["/", "/workers", "/tasks", "/broker"]
        nodes = [h.worker for h in fleet.status()]
        pages += [f"/worker/{node}" for node in nodes]
        pages += [f"/task/{h.id}" for h in (good, zero, false)]
        for path in pages:
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            for tab in page.locator("[data-bs-toggle=tab], [role=tab]").all():
                tab.click()  # the worker page's Config tab is Celery's inspect conf
            assert SECRET not in page.content(), path
        # the worker page's Config tab shows toolfleet's settings, masked
        page.goto(base + f"/worker/{nodes[0]}")
        assert "toolfleet_settings" in page.content()
        assert "redis://:**@127.0.0.1" in page.content()

    # what Celery, the records and the command line show, grepped too
    every = {"destination": nodes, "timeout": 5}  # back as soon as both have answered
    conf = fleet.app.control.inspect(**every).conf()
    stats = fleet.app.control.inspect(**every).stats()
    assert set(conf) == set(stats) == set(nodes) and "toolfleet_settings" in json.dumps(conf)
    shown: list[Any] = [conf, stats]
    with redis.Redis.from_url(workers.settings.broker_url) as client:
        shown += [client.get(key) for key in client.scan_iter(HEALTH_PREFIX + "*")]
    for args in (["status", "--json"], ["status"], ["status", "--wide"]):
        done = subprocess.run(
            [sys.executable, "-m", "toolfleet", *args],
            env=env_for(workers.settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        shown.append(done.stdout + done.stderr)
    assert SECRET not in json.dumps(shown, default=str)


def _loads(page: Any, url: str) -> bool:
    try:
        page.goto(url)
    except Exception:
        return False
    return True


def _rows(page: Any, text: str, timeout: float) -> list[str]:
    """The text of the task list rows containing ``text`` (waiting up to ``timeout``)."""
    return wait_until(
        lambda: [r for r in page.locator("table tbody tr").all_inner_texts() if text in r],
        timeout,
        interval=0.25,
    )
