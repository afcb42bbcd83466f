"""The dashboard's doors, probed as an attacker on the same machine would: a forged XSRF
token, requests from another origin or port, another Host (DNS rebinding), a cookie kept
after logout, and bad ids. Each probe shows that nothing was done."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from tornado.httpclient import HTTPResponse

from toolfleet.web.access import Access, access_for, host_allowed

from .test_web_handlers import PROMPT, TOKEN, WebCase, header


class DoorTest(WebCase):
    def logged_in(self) -> tuple[dict[str, str], dict[str, str]]:
        """The browser's cookies after logging in, and the headers the page's POSTs carry."""
        jar = self.login()
        return jar, {"Cookie": header(jar), "X-XSRFToken": jar["_xsrf"]}

    def raw_post(self, path: str, body: str, headers: dict[str, str]) -> HTTPResponse:
        return self.fetch(path, method="POST", body=body, headers=headers)

    def test_the_issue_s_forged_xsrf_is_refused(self) -> None:
        # a page on another port of 127.0.0.1 sets the _xsrf cookie (cookies do not tell
        # ports apart) and posts a form whose body is also JSON, token inside
        jar = self.login()
        jar["_xsrf"] = "deadbeef"
        body = json.dumps({"worker": "w1@h", "x": "&_xsrf=deadbeef&"})
        form = {"Cookie": header(jar), "Content-Type": "application/x-www-form-urlencoded"}
        response = self.raw_post("/api/restart", body, form)
        assert response.code == 415
        as_json = {"Cookie": header(jar), "Content-Type": "application/json"}
        assert self.raw_post("/api/restart?_xsrf=deadbeef", body, as_json).code == 403
        text = {"Cookie": header(jar), "Content-Type": "text/plain"}
        assert self.raw_post("/api/cancel", json.dumps({"prompt_id": PROMPT}), text).code == 415
        assert self.dashboard.actions.calls == []

    def test_a_post_another_origin_sent_is_refused_even_with_every_token(self) -> None:
        _, page = self.logged_in()
        for sent_by in (
            {"Sec-Fetch-Site": "same-site"},  # another port of 127.0.0.1
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "http://127.0.0.1:1"},
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
        ):
            response = self.post("/api/restart", {"worker": "w1@h"}, {**page, **sent_by})
            assert response.code == 403, sent_by
        assert self.dashboard.actions.calls == []
        own = f"http://127.0.0.1:{self.get_http_port()}"
        same = {**page, "Origin": own, "Sec-Fetch-Site": "same-origin"}
        assert self.post("/api/restart", {"worker": "w1@h"}, same).code == 200
        # our own forms, under the pages' no-referrer policy
        form = {**page, "Origin": "null", "Sec-Fetch-Site": "same-origin"}
        assert self.post("/api/restart", {"worker": "w1@h"}, form).code == 200
        assert self.dashboard.actions.calls == [("restart", "w1@h")] * 2

    def test_a_cross_site_logout_or_login_post_is_refused(self) -> None:
        jar, _ = self.logged_in()
        cross = {"Cookie": header(jar), "Sec-Fetch-Site": "same-site"}
        body = urlencode({"_xsrf": jar["_xsrf"], "token": TOKEN})
        assert self.raw_post("/logout", body, cross).code == 403
        assert self.raw_post("/login", body, cross).code == 403
        assert self.fetch("/api/state", headers={"Cookie": header(jar)}).code == 200

    def test_logging_out_ends_the_session_for_a_copy_of_the_cookie(self) -> None:
        jar, page = self.logged_in()
        stolen = {"Cookie": header(jar)}
        assert self.fetch("/api/state", headers=stolen).code == 200
        body = urlencode({"_xsrf": jar["_xsrf"]})
        out = self.raw_post("/logout", body, {"Cookie": header(jar)})
        assert out.code in (200, 302)
        assert self.fetch("/api/state", headers=stolen).code == 401
        assert self.post("/api/cancel", {"prompt_id": PROMPT}, page).code == 401
        assert self.dashboard.actions.calls == []

    def test_two_logins_are_two_sessions(self) -> None:
        first, _ = self.logged_in()
        second, _ = self.logged_in()
        assert first["toolfleet_web"] != second["toolfleet_web"]

    def test_bad_ids_are_refused_before_anything(self) -> None:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert self.post("/api/apply", {"ids": "c1"}, bearer).code == 400  # not letter by letter
        assert self.post("/api/apply", {"ids": ["c1\n"]}, bearer).code == 400
        assert self.post("/api/discard", {"ids": [1]}, bearer).code == 400
        assert self.fetch("/api/changes/c1%0A", headers=bearer).code == 400
        assert self.dashboard.actions.calls == []

    def test_static_files_carry_the_security_headers(self) -> None:
        script = self.fetch("/static/app.js")
        assert script.code == 200
        assert "frame-ancestors 'none'" in script.headers["Content-Security-Policy"]
        assert script.headers["X-Frame-Options"] == "DENY"
        assert script.headers["X-Content-Type-Options"] == "nosniff"


class LoopbackDoorTest(WebCase):
    """A dashboard on loopback, as ``toolfleet web`` makes it: the Host is checked, and
    a proxy at 127.0.0.1 is trusted to say the request came over TLS."""

    def get_app(self) -> Any:
        app = super().get_app()
        self.dashboard.access = access_for("127.0.0.1", TOKEN, trusted_proxies=["127.0.0.1"])
        return app

    def test_another_host_name_is_refused_dns_rebinding(self) -> None:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        port = self.get_http_port()
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
            assert self.fetch("/api/state", headers={**bearer, "Host": host}).code == 403, host
            assert self.fetch("/login", headers={"Host": host}).code == 403, host
            restart = self.post("/api/restart", {"worker": "w1@h"}, {**bearer, "Host": host})
            assert restart.code == 403
        assert self.dashboard.actions.calls == []
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert self.fetch("/api/state", headers={**bearer, "Host": host}).code == 200, host

    def test_the_login_cookie_is_secure_behind_a_trusted_tls_proxy(self) -> None:
        def login_cookie(headers: dict[str, str]) -> str:
            response = self.fetch(f"/?token={TOKEN}", headers=headers, follow_redirects=False)
            (line,) = [c for c in response.headers.get_list("Set-Cookie") if "toolfleet_web" in c]
            return line

        assert "Secure" in login_cookie({"X-Forwarded-Proto": "https"})
        assert "Secure" not in login_cookie({})


def test_host_names_are_compared_without_port_case_or_final_dot() -> None:
    allowed = frozenset({"localhost", "127.0.0.1", "::1"})
    assert host_allowed("LOCALHOST.:8088", allowed)
    assert host_allowed("[::1]:8088", allowed)
    assert not host_allowed("localhost.evil.example", allowed)
    assert host_allowed("anything", frozenset())


def test_a_proxy_is_believed_only_when_trusted() -> None:
    access = Access(TOKEN, trusted_proxies=frozenset({"10.0.0.2"}))
    assert access.came_over_tls("http", "10.0.0.2", "https")
    assert not access.came_over_tls("http", "10.0.0.3", "https")
    assert access.came_over_tls("https", "10.0.0.3", None)


def test_loopback_dashboards_check_the_host_and_others_by_choice() -> None:
    assert "localhost" in access_for("127.0.0.1", TOKEN).hosts
    assert access_for("0.0.0.0", TOKEN).hosts == frozenset()
    assert access_for("0.0.0.0", TOKEN, hosts=["fleet.example"]).hosts == {"fleet.example"}


def test_flower_never_starts_open() -> None:
    import os
    import subprocess
    import sys

    def flower(**env: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "toolfleet", "flower", "--port", "0"]
        everything = {**os.environ, "FLOWER_BASIC_AUTH": "", **env}
        return subprocess.run(argv, env=everything, capture_output=True, text=True, timeout=60)

    opened = flower(FLOWER_UNAUTHENTICATED_API="true", FLOWER_BASIC_AUTH="a:b")
    assert opened.returncode == 1 and "always needs credentials" in opened.stderr
    for empty in ("", ",", "nocolon"):
        bare = flower(FLOWER_BASIC_AUTH=empty)
        assert bare.returncode == 1 and "Flower needs credentials" in bare.stderr, bare.stderr


def test_the_exporter_listens_on_loopback_unless_told() -> None:
    from toolfleet.cli.exporter_command import exporter

    (address,) = [p for p in exporter.params if p.name == "address"]
    assert address.default == "127.0.0.1"


def test_a_change_s_branch_is_never_an_option_for_git() -> None:
    import pydantic

    from toolfleet.models import Changes

    fields = {"id": "c1", "worker": "w", "repo": "/r", "base": "0" * 40, "created_at": 0.0}
    assert Changes(branch="toolfleet/changes/c1", **fields).branch == "toolfleet/changes/c1"
    for bad in (
        "--upload-pack=touch x",
        "-D",
        "toolfleet/changes/-x",
        "main",
        "toolfleet/changes/a b",
    ):
        with pytest.raises(pydantic.ValidationError):
            Changes(branch=bad, **fields)
