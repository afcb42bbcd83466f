"""The dashboard's pages and API: logging in, the page, its state, a change, the actions."""

from __future__ import annotations

import json
import re
from pathlib import Path

from toolfleet.errors import ToolfleetError
from toolfleet.web.actions import applied_message
from toolfleet.web.base import BaseHandler, login_page, refused

__all__ = [
    "STATIC",
    "ActionHandler",
    "ChangeHandler",
    "HealthHandler",
    "IndexHandler",
    "LoginHandler",
    "LogoutHandler",
    "NotFoundHandler",
    "StateHandler",
]

STATIC = Path(__file__).resolve().parent / "static"
_CHANGE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class NotFoundHandler(BaseHandler):
    """Any other address: 404."""

    public = True

    def prepare(self) -> None:
        raise refused(404, "no such page")


class LoginHandler(BaseHandler):
    """``/login``: a form asking for the token, or ``?token=`` (the printed link)."""

    public = True

    def check_xsrf_cookie(self) -> None:
        """Logging in needs the token, nothing more."""

    def get(self) -> None:
        given = self.get_query_argument("token", None)
        if given is not None:
            self.login_with(given)
            return
        self.finish(login_page("", self.xsrf_form_html()))

    def post(self) -> None:
        self.login_with(self.get_body_argument("token", ""))


class LogoutHandler(BaseHandler):
    """``POST /logout``: ends the login's session (its cookie is worth nothing after)."""

    def post(self) -> None:
        self.dashboard.sessions.end(self.session())
        self.clear_cookie(self.cookie_name)
        self.redirect("/login")


class HealthHandler(BaseHandler):
    """``/healthz``: 200 while serving (no data: it needs no token)."""

    public = True

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.finish("ok\n")


class IndexHandler(BaseHandler):
    """``/``: the page (``?token=`` logs in first, like ``/login``)."""

    public = True

    def get(self) -> None:
        given = self.get_query_argument("token", None)
        if given is not None:
            self.login_with(given)
            return
        if not self.current_user:
            self.redirect("/login")
            return
        self.xsrf_token  # noqa: B018  (sets the _xsrf cookie the page's POSTs echo)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish((STATIC / "index.html").read_bytes())


class StateHandler(BaseHandler):
    """``/api/state``: the newest state (the JSON the event stream sends)."""

    async def get(self) -> None:
        await self.dashboard.feed.fresh()
        self.set_header("Content-Type", "application/json")
        self.finish(self.dashboard.feed.payload or "{}")


class ChangeHandler(BaseHandler):
    """``/api/changes/ID``: a change with its diff."""

    async def get(self, change: str) -> None:
        if not _CHANGE_ID.fullmatch(change):
            raise refused(400, "no change id")
        try:
            record = await self.dashboard.query(self.dashboard.actions.book.get, change)
        except ToolfleetError as exc:
            raise refused(404, self.dashboard.scrub.text(exc.message)) from None
        body = record.model_dump(mode="json")
        self.reply(self.dashboard.scrub.data(body))


class ActionHandler(BaseHandler):
    """``POST /api/ACTION`` with a JSON body: ``cancel`` {prompt_id}, ``restart``
    {worker}, ``apply`` {ids}, ``discard`` {ids}. Answers {ok, message, ...}."""

    async def post(self, action: str) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise refused(400, "the body is no JSON") from None
        if not isinstance(body, dict):
            raise refused(400, "the body is no JSON object")
        dashboard = self.dashboard
        try:
            if action == "cancel":
                what = await dashboard.act(dashboard.actions.cancel, str(body.get("prompt_id")))
                self.reply({"ok": True, "message": f"cancel: {what}"})
            elif action == "restart":
                worker = str(body.get("worker"))
                if worker not in dashboard.workers():
                    raise refused(404, f"no worker {worker!r} is reporting")
                what = await dashboard.act(dashboard.actions.restart, worker)
                self.reply({"ok": True, "message": f"restart: {what}"})
            elif action in ("apply", "discard"):
                ids = body.get("ids")
                if (
                    not isinstance(ids, list)
                    or not ids
                    or not all(isinstance(i, str) and _CHANGE_ID.fullmatch(i) for i in ids)
                ):
                    raise refused(400, "ids: a list of change ids")
                if action == "apply":
                    result = await dashboard.act(dashboard.actions.apply, ids)
                    dashboard.noted(result)
                    self.reply(applied_message(result))
                else:
                    await dashboard.act(dashboard.actions.discard, ids)
                    self.reply({"ok": True, "message": f"discarded {', '.join(ids)}"})
            else:
                raise refused(404, f"no action {action!r}")
        except ToolfleetError as exc:
            message = dashboard.scrub.text(f"{type(exc).__name__}: {exc.message}")
            self.reply({"ok": False, "message": message})
