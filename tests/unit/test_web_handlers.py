"""The dashboard's HTTP surface without Redis (Tornado's test server, a stand-in for the
fleet): every request needs the token, every action a POST with it, and neither the
token nor a password reaches a page or a log line."""

from __future__ import annotations

import json
import logging
import uuid
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import pytest
from tornado.httpclient import HTTPResponse
from tornado.testing import AsyncHTTPTestCase

from toolfleet.client.changes import ApplyResult
from toolfleet.errors import ConfigError, UnknownChange
from toolfleet.models import Changes
from toolfleet.web.access import Access, Scrubber, Sessions
from toolfleet.web.actions import Actions
from toolfleet.web.app import make_app
from toolfleet.web.feed import StateFeed
from toolfleet.web.output import OutputHub

TOKEN = "unit-web-token-0123456789"
PROMPT = str(uuid.uuid4())
STATE = {
    "fleet": "redis://:**@h:6379/0",
    "instances": [{"worker": "w1@h", "profile": "python", "state": "busy", "prompt_id": PROMPT}],
    "sessions": [],
    "runs": [],
    "changes": [],
}
CHANGE = Changes(
    id="c1",
    worker="w1@h",
    repo="/r",
    branch="toolfleet/changes/c1",
    base="0" * 40,
    commit="1" * 40,
    files=["a.py"],
    insertions=1,
    patch=f"+# DOC_ID: a\n+{TOKEN}\n",
    created_at=0.0,
)


class FakeBook:
    def get(self, change: str) -> Changes:
        if change != "c1":
            raise UnknownChange(f"no change {change!r}")
        return CHANGE


class FakeActions:
    """Records what the buttons asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.book = FakeBook()

    def cancel(self, prompt_id: str) -> str:
        self.calls.append(("cancel", prompt_id))
        return "interrupted on w1@h"

    def restart(self, worker: str) -> str:
        self.calls.append(("restart", worker))
        return f"{worker}: restarted, generation 2"

    def apply(self, ids: list[str]) -> ApplyResult:
        self.calls.append(("apply", ids))
        return ApplyResult(applied=ids[:1], conflicts={i: ["x.py"] for i in ids[1:]})

    def discard(self, ids: list[str]) -> list[str]:
        self.calls.append(("discard", ids))
        return ids


class FakeDashboard:
    """What the handlers use of a Dashboard, with no fleet behind it."""

    def __init__(self) -> None:
        self.access = Access(TOKEN)
        self.sessions = Sessions()
        self.scrub = Scrubber([TOKEN])
        self.actions = FakeActions()
        self.feed = StateFeed(
            lambda: STATE, lambda state, error: {**(state or {}), "error": error}, str, None, 1.0
        )
        self.feed.publish(STATE, None)
        self.output = OutputHub(None, str, self.scrub)
        self.noted_results: list[ApplyResult] = []

    async def act(self, action: Any, *args: Any) -> Any:
        return action(*args)

    async def query(self, read: Any, *args: Any) -> Any:
        return read(*args)

    def workers(self) -> set[str]:
        return {"w1@h"}

    def noted(self, result: ApplyResult) -> None:
        self.noted_results.append(result)


class WebCase(AsyncHTTPTestCase):
    """A dashboard over a fake fleet, and what a browser does with it."""

    def get_app(self) -> Any:
        self.dashboard = FakeDashboard()
        return make_app(self.dashboard)

    # -- helpers

    def login(self) -> dict[str, str]:
        """Log in through the form; the cookies a browser would then hold."""
        response = self.fetch(
            "/login", method="POST", body=urlencode({"token": TOKEN}), follow_redirects=False
        )
        assert response.code == 302 and response.headers["Location"] == "/"
        jar = self.cookies(response)
        page = self.fetch("/", headers={"Cookie": header(jar)})
        assert page.code == 200
        jar.update(self.cookies(page))
        assert "_xsrf" in jar
        return jar

    @staticmethod
    def cookies(response: HTTPResponse) -> dict[str, str]:
        jar: dict[str, str] = {}
        for line in response.headers.get_list("Set-Cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(line)
            jar.update({k: m.value for k, m in parsed.items()})
        return jar

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> HTTPResponse:
        """A POST as the page sends it: a JSON body."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        return self.fetch(path, method="POST", body=json.dumps(body), headers=sent)


class WebTest(WebCase):
    def test_the_health_check_and_the_static_files_need_no_token(self) -> None:
        assert self.fetch("/healthz").body == b"ok\n"
        script = self.fetch("/static/app.js")
        assert script.code == 200 and b"EventSource" in script.body
        assert TOKEN.encode() not in script.body

    def test_the_page_sends_a_stranger_to_the_login_form(self) -> None:
        response = self.fetch("/", follow_redirects=False)
        assert response.code == 302 and response.headers["Location"] == "/login"
        form = self.fetch("/login")
        assert form.code == 200 and b'name="token"' in form.body and b"_xsrf" in form.body
        assert TOKEN.encode() not in form.body

    def test_every_request_without_the_token_is_refused(self) -> None:
        wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "X"}
        for headers in ({}, wrong):
            for path in ("/api/state", "/events", f"/events/output/{PROMPT}", "/api/changes/c1"):
                response = self.fetch(path, headers=headers)
                assert response.code == 401, path
                assert json.loads(response.body) == {"ok": False, "message": "log in first"}
            for action, body in (("cancel", {"prompt_id": PROMPT}), ("apply", {"ids": ["c1"]})):
                assert self.post(f"/api/{action}", body, headers).code == 401
        assert self.dashboard.actions.calls == []  # nothing was done

    def test_a_wrong_token_logs_nobody_in(self) -> None:
        response = self.fetch(
            "/login", method="POST", body=urlencode({"token": "nope"}), follow_redirects=False
        )
        assert response.code == 403 and b"That is not the token." in response.body
        assert not response.headers.get_list("Set-Cookie") or "toolfleet_web" not in str(
            response.headers.get_list("Set-Cookie")
        )
        by_link = self.fetch("/?token=nope", follow_redirects=False)
        assert by_link.code == 403

    def test_the_login_cookie_is_http_only_strict_and_not_the_token(self) -> None:
        response = self.fetch(f"/?token={TOKEN}", follow_redirects=False)
        assert response.code == 302 and response.headers["Location"] == "/"
        (line,) = [c for c in response.headers.get_list("Set-Cookie") if "toolfleet_web" in c]
        assert "HttpOnly" in line and "SameSite=Strict" in line and TOKEN not in line

    def test_the_bearer_token_reads_the_state(self) -> None:
        response = self.fetch("/api/state", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.code == 200
        state = json.loads(response.body)
        assert state["instances"][0]["worker"] == "w1@h" and state["seq"] == 1

    def test_the_page_and_its_event_stream_after_logging_in(self) -> None:
        jar = self.login()
        page = self.fetch("/", headers={"Cookie": header(jar)})
        assert b'<script src="/static/app.js"' in page.body and TOKEN.encode() not in page.body
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Referrer-Policy"] == "no-referrer"
        self.dashboard.feed.stop()  # the stream sends the newest state, then ends
        events = self.fetch("/events", headers={"Cookie": header(jar)})
        assert events.headers["Content-Type"] == "text/event-stream"
        (data,) = [line for line in events.body.decode().splitlines() if line.startswith("data:")]
        assert json.loads(data.removeprefix("data: "))["instances"] == STATE["instances"]

    def test_a_post_with_the_login_cookie_also_needs_the_xsrf_header(self) -> None:
        jar = self.login()
        cookie = {"Cookie": header(jar)}
        refused = self.post("/api/cancel", {"prompt_id": PROMPT}, cookie)
        assert refused.code == 403 and self.dashboard.actions.calls == []
        xsrf = {**cookie, "X-XSRFToken": jar["_xsrf"]}
        done = self.post("/api/cancel", {"prompt_id": PROMPT}, xsrf)
        assert done.code == 200
        assert json.loads(done.body) == {"ok": True, "message": "cancel: interrupted on w1@h"}
        assert self.dashboard.actions.calls == [("cancel", PROMPT)]

    def test_actions_with_the_bearer_token(self) -> None:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        restarted = self.post("/api/restart", {"worker": "w1@h"}, bearer)
        assert json.loads(restarted.body)["message"] == "restart: w1@h: restarted, generation 2"
        unknown = self.post("/api/restart", {"worker": "nobody@h"}, bearer)
        assert unknown.code == 404
        assert json.loads(unknown.body)["message"] == "no worker 'nobody@h' is reporting"
        applied = json.loads(self.post("/api/apply", {"ids": ["c1", "c2"]}, bearer).body)
        assert applied["ok"] is False and applied["applied"] == ["c1"]
        assert applied["conflicts"] == {"c2": ["x.py"]}
        assert "conflict: c2 not applied (x.py)" in applied["message"]
        assert self.dashboard.noted_results[0].conflicts == {"c2": ["x.py"]}
        discarded = json.loads(self.post("/api/discard", {"ids": ["c1"]}, bearer).body)
        assert discarded == {"ok": True, "message": "discarded c1"}
        assert self.post("/api/apply", {"ids": ["../x"]}, bearer).code == 400
        assert self.post("/api/apply", {"ids": []}, bearer).code == 400
        assert self.post("/api/nothing", {}, bearer).code == 404
        assert [c[0] for c in self.dashboard.actions.calls] == ["restart", "apply", "discard"]

    def test_a_change_with_its_diff_scrubbed(self) -> None:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        record = json.loads(self.fetch("/api/changes/c1", headers=bearer).body)
        assert record["patch"] == "+# DOC_ID: a\n+**\n"
        missing = self.fetch("/api/changes/c9", headers=bearer)
        assert missing.code == 404 and "no change 'c9'" in json.loads(missing.body)["message"]

    def test_a_prompts_output_stream_then_how_it_ended(self) -> None:
        buffer = self.dashboard.output.watch(PROMPT)
        assert buffer is not None
        self.dashboard.output.leave(buffer)
        buffer.add("line 0\n")
        buffer.add("line 1\n")
        buffer.ending = {"status": "PromptCancelled", "message": "the tool was interrupted"}
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        body = self.fetch(f"/events/output/{PROMPT}", headers=bearer).body.decode()
        assert 'id: 0\nevent: chunk\ndata: {"t": "line 0\\n"}' in body
        assert 'id: 1\nevent: chunk\ndata: {"t": "line 1\\n"}' in body
        end = json.loads(body.split("event: end\ndata: ")[1].split("\n")[0])
        assert end == {
            "status": "PromptCancelled",
            "message": "the tool was interrupted",
            "truncated": False,
        }
        resumed = self.fetch(
            f"/events/output/{PROMPT}", headers={**bearer, "Last-Event-ID": "0"}
        ).body.decode()
        assert "line 0" not in resumed and "line 1" in resumed
        assert self.fetch("/events/output/not-a-uuid", headers=bearer).code == 400

    def test_unknown_addresses_are_404_and_logs_never_show_a_query(self) -> None:
        logger = logging.getLogger("tornado.access")
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())
        logger.addHandler(handler)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            assert self.fetch(f"/nothing?token={TOKEN}").code == 404
            self.fetch(f"/login?token={TOKEN}", follow_redirects=False)
            self.fetch(f"/api/state?token={TOKEN}")
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        assert any("GET /login (" in r for r in records), records
        assert not any(TOKEN in r for r in records), records


def header(jar: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def test_cancel_refuses_what_is_no_prompt_id_before_anything() -> None:
    actions = Actions(None, None, None)
    with pytest.raises(ConfigError, match="'1; rm' is no prompt id"):
        actions.cancel("1; rm")
    with pytest.raises(ConfigError, match="no git checkout to apply into"):
        actions.apply(["c1"])
