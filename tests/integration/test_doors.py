"""The fleet's doors, probed as an attacker on the same machine would (traffic on
127.0.0.1 only): the issue's requests to Flower and to the dashboard, another Host
(DNS rebinding), and a page on another port of 127.0.0.1 in a real browser whose user is
logged in to both. Each probe is refused and nothing runs; the same request made
rightly does run, so the checks could fail. Also: the embedded Redis of ``toolfleet up``
has a password that other commands find."""

from __future__ import annotations

import http.server
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import redis
import requests

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis, LocalFleet, flower_command, free_port
from toolfleet.keys import HEALTH_PREFIX
from toolfleet.models import InstanceHealth

from ..helpers import eventually
from .browser import browser_page
from .conftest import _fresh_settings
from .procs import Workers, env_for

TOKEN = "doors-web-token-0123456789"
FLOWER_AUTH = ("ops", "doors-flower-password")
PROMPT_TASK = "/api/task/async-apply/toolfleet.prompt"


@dataclass
class Doors:
    settings: Settings
    workers: Workers
    worker: str  # the bash worker's node name
    flower: str  # http://127.0.0.1:PORT
    web: str
    tmp: Path

    def health(self) -> InstanceHealth:
        (found,) = [h for h in self.workers.fleet.status() if h.worker == self.worker]
        return found

    def drained(self) -> None:
        """Until everything queued for the bash worker before now has run."""
        assert self.workers.fleet.submit("echo drained", "bash").get(timeout=60).ok


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def doors(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Doors]:
    tmp = tmp_path_factory.mktemp("doors")
    settings = _fresh_settings(redis_server)
    workers = Workers(settings, tmp)
    flower_port, web_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        (name,) = workers.start("bash")
        workers.wait_ready([name])
        for argv, extra, log in (
            (flower_command(flower_port), {"FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)}, "flower"),
            (
                [sys.executable, "-m", "toolfleet", "web", "--port", str(web_port)],
                {"TOOLFLEET_WEB_TOKEN": TOKEN},
                "web",
            ),
        ):
            with open(tmp / f"{log}.log", "wb") as out:
                procs.append(
                    subprocess.Popen(
                        argv, env=env_for(settings, **extra), stdout=out, stderr=subprocess.STDOUT
                    )
                )
        flower, web = f"http://127.0.0.1:{flower_port}", f"http://127.0.0.1:{web_port}"
        eventually(lambda: _answers(flower + "/healthcheck"), 60, "Flower", interval=0.2)
        eventually(lambda: _answers(web + "/healthz"), 60, "toolfleet web", interval=0.2)
        yield Doors(settings, workers, workers.node(name), flower, web, tmp)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)
        assert workers.close() == set(), "processes left running"


def _issue_probe(target: Path) -> str:
    """The body of the issue's request to Flower: a shell command for the bash workers."""
    return f'{{"args": ["id > {target}"], "queue": "toolfleet.bash"}}'


def test_flower_refuses_the_issue_s_requests_and_nothing_runs(doors: Doors) -> None:
    target = doors.tmp / "flower-probe"
    text = {"Content-Type": "text/plain"}
    # no credentials: the issue's request as it was written (curl or a page alike)
    open_door = requests.post(doors.flower + PROMPT_TASK, data=_issue_probe(target), headers=text)
    assert open_door.status_code == 401
    assert "Access-Control-Allow-Origin" not in open_door.headers
    tasks = requests.get(doors.flower + "/api/tasks", timeout=10)
    assert tasks.status_code == 401 and "Access-Control-Allow-Origin" not in tasks.headers
    # with the credentials: another Host (DNS rebinding), another site or origin
    for headers in (
        {"Host": "evil.example:5555"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of 127.0.0.1
        {"Origin": "http://127.0.0.1:1"},
    ):
        refused = requests.post(
            doors.flower + PROMPT_TASK,
            data=_issue_probe(target),
            headers={**text, **headers},
            auth=FLOWER_AUTH,
            timeout=10,
        )
        assert refused.status_code == 403, headers
    doors.drained()
    assert not target.exists()
    # the same request with the credentials, from no other site: it runs (so the
    # probes above would have been seen)
    done = requests.post(
        doors.flower + PROMPT_TASK, data=_issue_probe(target), auth=FLOWER_AUTH, timeout=10
    )
    assert done.status_code == 200, done.text
    eventually(target.exists, 60, "the rightful prompt's file")


def test_the_dashboard_refuses_another_host(doors: Doors) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/api/state", "/login", "/"):
        response = requests.get(
            doors.web + path, headers={**bearer, "Host": "evil.example"}, timeout=10
        )
        assert response.status_code == 403, path
    assert requests.get(doors.web + "/api/state", headers=bearer, timeout=10).status_code == 200


ATTACK = """<!doctype html><html><body><script>
const done = [];
const send = (url, init) => fetch(url, {{mode: "no-cors", credentials: "include", ...init}})
  .then(() => "sent", (e) => "error " + e);
document.cookie = "_xsrf=deadbeef; path=/";
Promise.all([
  send("{flower}{task}", {{method: "POST", headers: {{"Content-Type": "text/plain"}},
    body: {probe}}}),
  send("{web}/api/restart", {{method: "POST",
    headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
    body: JSON.stringify({{worker: "{worker}", x: "&_xsrf=deadbeef&"}})}}),
  send("{web}/api/restart?_xsrf=deadbeef", {{method: "POST",
    headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{worker: "{worker}"}})}}),
  fetch("{flower}/api/tasks", {{credentials: "include"}}).then((r) => r.text(),
    () => "refused"),
]).then((results) => {{ document.title = "done"; document.body.dataset.results =
  JSON.stringify(results); }});
</script></body></html>
"""


def test_a_page_on_another_port_drives_neither_flower_nor_the_dashboard(doors: Doors) -> None:
    target = doors.tmp / "browser-probe"
    site = doors.tmp / "attacker"
    site.mkdir()
    (site / "index.html").write_text(
        ATTACK.format(
            flower=doors.flower,
            web=doors.web,
            task=PROMPT_TASK,
            probe=repr(_issue_probe(target)),
            worker=doors.worker,
        )
    )
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    generation = doors.health().generation
    user, password = FLOWER_AUTH
    try:
        with browser_page(http_credentials={"username": user, "password": password}) as page:
            # the victim is logged in to both: Flower (basic auth) and the dashboard
            page.goto(doors.flower + "/workers")
            assert "Flower" in page.title()
            page.goto(f"{doors.web}/login?token={TOKEN}")
            page.wait_for_url(doors.web + "/")
            page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/index.html")
            page.wait_for_function("document.title === 'done'", timeout=30_000)
            results = page.evaluate("JSON.parse(document.body.dataset.results)")
    finally:
        attacker.shutdown()
        attacker.server_close()
    assert results[3] == "refused"  # nothing of Flower's is readable from elsewhere
    doors.drained()
    assert not target.exists(), "a page on another port ran a command through Flower"
    after = doors.health()
    assert after.generation == generation, "a page on another port restarted the worker"


def test_up_s_embedded_redis_has_a_password_other_commands_find(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    settings = Settings(
        broker_url=f"redis://127.0.0.1:{port}/0", heartbeat_interval=0.5, state_dir=state
    )
    with LocalFleet(settings, {"echo": 1}, log_dir=str(tmp_path)) as fleet:
        assert fleet.redis is not None
        kept = state / f"redis-{port}.password"
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        password = kept.read_text().strip()
        assert len(password) >= 32 and password in fleet.settings.broker_url
        with redis.Redis(port=port) as stranger, pytest.raises(redis.AuthenticationError):
            stranger.keys(HEALTH_PREFIX + "*")
        # another terminal of the same user: the URL without the password, as configured
        unset = {"TOOLFLEET_BROKER_URL": settings.broker_url, "TOOLFLEET_RESULT_BACKEND": ""}
        done = subprocess.run(
            [sys.executable, "-m", "toolfleet", "submit", "--profile", "echo", "--wait", "hi"],
            env=env_for(settings, **unset),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "hi" in done.stdout and password not in done.stdout + done.stderr
