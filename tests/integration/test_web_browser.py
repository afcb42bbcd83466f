"""``toolfleet web`` in a real browser (Playwright driving Debian's Chromium) on a real
fleet behind a password-protected Redis: every worker listed, a failed one with its
reason, output streamed while its prompt runs, cancel, restart, sessions and map runs in
progress, a change's diff and apply (and a conflict), a SIGKILLed worker gone within the
health TTL; no request without the token does anything; no page or log shows a secret."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from toolfleet import Fleet, PromptCancelled, Settings
from toolfleet.cli.local import EmbeddedRedis, free_port
from toolfleet.client.items import MapOutcome
from toolfleet.models import InstanceHealth

from ..gitrepo import git, make_repo
from ..helpers import eventually
from .browser import browser_page
from .procs import Workers, env_for

SECRET = "w3b-redis-s3cret-4f2a"
TOKEN = "w3b-token-0123456789abcdef"
HEADER = "sed -i '1i # DOC_ID: {stem}' {path}"


@dataclass
class Env:
    settings: Settings
    workers: Workers
    base: str
    repo: Path
    tmp: Path

    @property
    def fleet(self) -> Fleet:
        return self.workers.fleet


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("web")
    repo = tmp / "repo"
    make_repo(repo, {f"src/m{i}.py": f"x = {i}\n" for i in range(4)})
    profiles = tmp / "profiles.toml"
    profiles.write_text(
        f'[profiles.bash-wt]\nextends = "bash"\nworkspace = "worktree"\nrepo = "{repo}"\n'
        f'[profiles.bash-nogit]\nextends = "bash"\nworkspace = "worktree"\nrepo = "{tmp}"\n',
        encoding="utf-8",
    )
    log = tmp / "web.log"
    with EmbeddedRedis(password=SECRET) as server:
        settings = Settings(broker_url=server.url, heartbeat_interval=0.5, profiles=profiles)
        workers = Workers(settings, tmp)
        port = free_port()
        web = None
        try:
            workers.start("bash-nogit")
            workers.wait_ready(workers.start("python", 2) + workers.start("bash-wt"))
            argv = [sys.executable, "-m", "toolfleet", "web", "--port", str(port)]
            with open(log, "wb") as out:
                web = subprocess.Popen(
                    [*argv, "--repo", str(repo), "--loglevel", "INFO"],
                    env=env_for(settings, TOOLFLEET_WEB_TOKEN=TOKEN),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            base = f"http://127.0.0.1:{port}"
            eventually(lambda: _answers(base + "/healthz"), 30, "toolfleet web", interval=0.1)
            yield Env(settings, workers, base, repo, tmp)
        finally:
            if web is not None:
                web.terminate()
                assert web.wait(15) == 0, log.read_text()
            assert workers.close() == set(), "processes left running"
    text = log.read_text()
    assert "200 GET /healthz (" in text  # the access log is on (and shows no query string)
    for path in [log, *tmp.glob("*.log")]:
        content = path.read_text(errors="replace")
        assert SECRET not in content and TOKEN not in content, path


@pytest.fixture(scope="module")
def page(env: Env) -> Iterator[Any]:
    with browser_page() as page:
        page.on("dialog", lambda dialog: dialog.accept())  # the confirm() of the buttons
        page.goto(env.base + "/")
        assert page.url == env.base + "/login"
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("#instances tr[data-worker]")
        assert page.url == env.base + "/"
        yield page


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def shown_workers(page: Any) -> set[str]:
    """The workers the instance table lists now (read at once: rows come and go)."""
    found = page.eval_on_selector_all(
        "#instances tr[data-worker]", "rows => rows.map(row => row.dataset.worker)"
    )
    return set(found)


def row(page: Any, worker: str) -> Any:
    return page.locator(f'#instances tr[data-worker="{worker}"]')


def running(env: Env, prompt_id: str) -> InstanceHealth:
    return eventually(
        lambda: next((h for h in env.fleet.status() if h.prompt_id == prompt_id), None),
        30,
        f"{prompt_id} running",
    )


def test_every_worker_is_listed_a_failed_one_with_its_reason_and_no_secret(
    env: Env, page: Any
) -> None:
    failed = eventually(
        lambda: next((h for h in env.fleet.status() if h.state == "failed"), None),
        30,
        "bash-nogit failed",
    )
    everyone = {h.worker for h in env.fleet.status()}
    assert len(everyone) == 4
    eventually(lambda: shown_workers(page) == everyone, 10, lambda: f"{shown_workers(page)}")
    assert row(page, failed.worker).get_attribute("data-state") == "failed"
    reason = row(page, failed.worker).locator(".reason").inner_text()
    assert "is no git repository" in reason and reason == failed.last_error
    assert "redis://:**@127.0.0.1" in page.inner_text("header")
    # the filters
    page.select_option("#filter-profile", "bash-wt")
    eventually(lambda: len(shown_workers(page)) == 1, 10, "the profile filter")
    page.select_option("#filter-profile", "")
    page.select_option("#filter-state", "failed")
    eventually(lambda: shown_workers(page) == {failed.worker}, 10, "the state filter")
    page.select_option("#filter-state", "")
    eventually(lambda: shown_workers(page) == everyone, 10, "no filter")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    state = requests.get(env.base + "/api/state", headers=bearer, timeout=10).text
    for shown in (page.content(), state, requests.get(env.base + "/static/app.js").text):
        assert SECRET not in shown and TOKEN not in shown


def test_a_prompt_streams_its_lines_to_the_page_before_it_ends(env: Env, page: Any) -> None:
    go = env.tmp / "go-stream"
    text = (
        f"import os, time\ni = 0\nwhile not os.path.exists({str(go)!r}):\n"
        "    print(f'line {i}')\n    i += 1\n    time.sleep(0.2)\n"
    )
    handle = env.fleet.submit(text, "python")
    record = running(env, handle.id)
    button = row(page, record.worker).locator("button.show-output")
    eventually(button.is_visible, 10, "the output button")
    button.click()
    output = page.locator(f'.panel[data-prompt="{handle.id}"] pre')
    eventually(lambda: "line 3\n" in output.inner_text(), 30, "lines on the page")
    assert not handle.ready()  # the prompt cannot end before the file exists
    go.touch()
    result = handle.get(timeout=30)
    panel = page.locator(f'.panel[data-prompt="{handle.id}"]')
    eventually(lambda: panel.get_attribute("data-ended") == "ok", 30, "the end of the prompt")
    assert output.text_content() == result.output  # nothing lost, nothing twice
    assert "ended: ok" in panel.inner_text()


def test_the_cancel_button_ends_a_prompt_with_prompt_cancelled(env: Env, page: Any) -> None:
    handle = env.fleet.submit("import time\ntime.sleep(600)", "python")
    record = running(env, handle.id)
    line = row(page, record.worker)
    eventually(line.locator("button.cancel").is_visible, 10, "the cancel button")
    line.locator("button.show-output").click()
    line.locator("button.cancel").click()
    with pytest.raises(PromptCancelled):
        handle.get(timeout=30)
    eventually(
        lambda: f"cancel: interrupted on {record.worker}" in page.inner_text("#flash"),
        10,
        "the cancel's answer",
    )
    panel = page.locator(f'.panel[data-prompt="{handle.id}"]')
    eventually(lambda: panel.get_attribute("data-ended") == "PromptCancelled", 30, "its end")
    eventually(lambda: line.get_attribute("data-state") == "ready", 30, "the instance ready")


def test_the_restart_button_restarts_the_tool(env: Env, page: Any) -> None:
    before = next(h for h in env.fleet.status("python") if h.state == "ready")
    row(page, before.worker).locator("button.restart").click()

    def restarted() -> InstanceHealth | None:
        now = next(h for h in env.fleet.status("python") if h.worker == before.worker)
        return now if now.generation > before.generation and now.state == "ready" else None

    after = eventually(restarted, 30, "a new generation")
    generation = row(page, before.worker).locator("td").nth(6)
    eventually(lambda: generation.inner_text() == str(after.generation), 10, "it on the page")
    assert f"restart: {before.worker}: restarted" in page.inner_text("#flash")


def test_sessions_map_runs_and_changes_in_progress(env: Env, page: Any) -> None:
    go = env.tmp / "go-run"
    wait = f"import os, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.05)"
    outcomes: list[MapOutcome] = []

    def run() -> None:
        with Fleet(env.settings) as fleet:
            outcomes.extend(fleet.map([*(["6 * 7"] * 5), wait], "python", chunk=1, in_flight=1))

    (made,) = env.fleet.map(["src/m0.py"], "bash-wt", steps=[HEADER])
    change = made.changes
    assert change is not None
    with env.fleet.session("python") as session:
        eventually(
            lambda: page.locator(f'#sessions tr[data-session="{session.id}"]').count() == 1,
            10,
            "the session",
        )
        line = page.locator(f'#sessions tr[data-session="{session.id}"]').inner_text()
        assert session.worker in line and "python" in line
        streaming = session.send("for i in range(3):\n    print(f'item {i}')\n" + wait)
        runner = threading.Thread(target=run)
        runner.start()
        try:
            runs = page.locator("#runs tr[data-run]", has_text="python")
            eventually(lambda: runs.count() == 1 and "5 / 6" in runs.inner_text(), 30, "a run")
            assert "running" in runs.inner_text()
            record = running(env, streaming.id)
            row(page, record.worker).locator("button.show-output").click()
            output = page.locator(f'.panel[data-prompt="{streaming.id}"] pre')
            eventually(lambda: "item 2" in output.inner_text(), 30, "the session's output")
            page.locator(f'#changes tr[data-change="{change.id}"] button.diff-button').click()
            eventually(lambda: "+# DOC_ID: m0" in page.inner_text("#changes"), 10, "the diff")
            shot = os.environ.get("TOOLFLEET_WEB_SCREENSHOT") or str(env.tmp / "web.png")
            page.screenshot(path=shot, full_page=True)
        finally:
            go.touch()
            runner.join(60)
        streaming.get(timeout=30)
    assert [o.ok for o in outcomes] == [True] * 6
    eventually(lambda: "finished" in runs.inner_text(), 30, "the run finished")
    assert "6 / 6" in runs.inner_text()
    eventually(lambda: page.locator("#sessions tr[data-session]").count() == 0, 10, "closed")
    env.fleet.changes.discard(change.id, repo=env.repo)


def test_a_pending_changes_diff_is_shown_and_the_apply_button_applies_it(
    env: Env, page: Any
) -> None:
    (outcome,) = env.fleet.map(["src/m1.py"], "bash-wt", steps=[HEADER])
    assert outcome.ok and outcome.changes is not None
    change = outcome.changes.id
    line = page.locator(f'#changes tr[data-change="{change}"]')
    eventually(lambda: line.count() == 1, 10, "the change listed")
    assert "src/m1.py" in line.inner_text()
    line.locator("button.diff-button").click()
    diff = page.locator(f'#changes tr[data-diff="{change}"]')
    eventually(lambda: "+# DOC_ID: m1" in diff.inner_text(), 10, "the diff")
    line.locator("button.apply").click()
    eventually(
        lambda: (env.repo / "src/m1.py").read_text().startswith("# DOC_ID: m1\n"), 30, "applied"
    )
    assert not git(env.repo, "status", "--porcelain")
    eventually(lambda: line.count() == 0, 10, "the change gone from the list")
    assert f"applied {change}" in page.inner_text("#flash")
    assert env.fleet.changes.get(change).state == "applied"


def test_a_conflicting_change_shows_its_files_and_changes_nothing(env: Env, page: Any) -> None:
    edit = "sed -i '1s/.*/# DOC_ID: theirs/' {path}"
    (outcome,) = env.fleet.map(["src/m2.py"], "bash-wt", steps=[edit])
    assert outcome.changes is not None
    change = outcome.changes.id
    (env.repo / "src/m2.py").write_text("# DOC_ID: mine\n", encoding="utf-8")
    git(env.repo, "commit", "--quiet", "-am", "mine")
    head = git(env.repo, "rev-parse", "HEAD")
    line = page.locator(f'#changes tr[data-change="{change}"]')
    eventually(lambda: line.count() == 1, 10, "the change listed")
    line.locator("button.apply").click()
    eventually(lambda: "conflict: not applied (src/m2.py)" in line.inner_text(), 30, "the conflict")
    assert f"conflict: {change} not applied (src/m2.py)" in page.inner_text("#flash")
    assert git(env.repo, "rev-parse", "HEAD") == head and not git(env.repo, "status", "--porcelain")
    assert env.fleet.changes.get(change).state == "pending"
    line.locator("button.discard").click()
    eventually(lambda: line.count() == 0, 10, "discarded")
    assert env.fleet.changes.get(change).state == "discarded"


def test_a_sigkilled_worker_disappears_within_the_health_ttl(env: Env, page: Any) -> None:
    (name,) = env.workers.start("python", prefix="doomed")
    env.workers.wait_ready([name])
    node = env.workers.node(name)
    eventually(lambda: node in shown_workers(page), 10, "the new worker listed")
    killed = time.monotonic()
    assert env.workers.stop(name, sig=signal.SIGKILL) == set()
    # its record expires within the TTL of its last heartbeat; the page reads every 0.5 s
    bound = env.settings.health_ttl + 0.5 + 2.0
    eventually(lambda: node not in shown_workers(page), bound, "the killed worker gone")
    gone = time.monotonic() - killed
    print(f"a SIGKILLed worker left the page {gone:.2f} s after the kill")


def test_requests_without_the_token_are_refused(env: Env) -> None:
    handle = env.fleet.submit("import time\ntime.sleep(600)", "python")
    record = running(env, handle.id)
    body = {"prompt_id": handle.id}
    wrong = {"Authorization": "Bearer not-the-token-0123456789"}
    for headers in ({}, wrong):
        refused = requests.post(env.base + "/api/cancel", json=body, headers=headers, timeout=10)
        assert refused.status_code == 401
        restart = {"worker": record.worker}
        assert requests.post(env.base + "/api/restart", json=restart, timeout=10).status_code == 401
        for path in ("/api/state", "/events", f"/events/output/{handle.id}"):
            assert requests.get(env.base + path, headers=headers, timeout=10).status_code == 401
    page = requests.get(env.base + "/", allow_redirects=False, timeout=10)
    assert page.status_code == 302 and page.headers["Location"] == "/login"
    # logged in, a POST also needs the _xsrf cookie's value in a header (no other site
    # can read it)
    with requests.Session() as browser:
        assert browser.get(env.base + f"/?token={TOKEN}", timeout=10).status_code == 200
        refused = browser.post(env.base + "/api/cancel", json=body, timeout=10)
        assert refused.status_code == 403
        # nothing was cancelled, nor restarted
        assert running(env, handle.id).generation == record.generation
        xsrf = {"X-XSRFToken": browser.cookies["_xsrf"]}
        done = browser.post(env.base + "/api/cancel", json=body, headers=xsrf, timeout=10)
    assert done.status_code == 200
    assert done.json() == {"ok": True, "message": f"cancel: interrupted on {record.worker}"}
    with pytest.raises(PromptCancelled):
        handle.get(timeout=30)
