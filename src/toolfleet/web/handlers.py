"""The dashboard's HTTP handlers: the page, its event streams, and its actions (POST)."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.web
from tornado.iostream import StreamClosedError
from tornado.log import access_log

from toolfleet.errors import ToolfleetError
from toolfleet.web.actions import applied_message, valid_prompt_id

if TYPE_CHECKING:
    from toolfleet.web.app import Dashboard

__all__ = [
    "ActionHandler",
    "BaseHandler",
    "ChangeHandler",
    "EventsHandler",
    "HealthHandler",
    "IndexHandler",
    "LoginHandler",
    "LogoutHandler",
    "NotFoundHandler",
    "OutputHandler",
    "StateHandler",
    "log_request",
    "refused",
    "request_summary",
]

STATIC = Path(__file__).resolve().parent / "static"
#: seconds between keep-alive comments on an idle event stream
KEEPALIVE = 15.0
_CHANGE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def refused(status: int, message: str) -> tornado.web.HTTPError:
    """An HTTP error whose message the client gets (JSON ``message``)."""
    return tornado.web.HTTPError(status, "%s", message)


class BaseHandler(tornado.web.RequestHandler):
    """Every handler but the login's and the health check's needs the token: the login
    cookie or ``Authorization: Bearer TOKEN``. A POST with the cookie also needs the
    ``_xsrf`` cookie's value in an ``X-XSRFToken`` header (a page on another site cannot
    read it); a POST with the bearer token needs nothing more."""

    dashboard: Dashboard
    public = False

    def initialize(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    def set_default_headers(self) -> None:
        for name, value in _SECURITY_HEADERS.items():
            self.set_header(name, value)

    @property
    def cookie_name(self) -> str:
        return str(self.application.settings["login_cookie"])

    def bearer(self) -> bool:
        """The request carries the token in an Authorization header."""
        kind, _, given = self.request.headers.get("Authorization", "").partition(" ")
        return kind.lower() == "bearer" and self.dashboard.access.accepts(given.strip())

    def get_current_user(self) -> str | None:
        if self.bearer():
            return "bearer"
        if self.get_signed_cookie(self.cookie_name, max_age_days=1):
            return "cookie"
        return None

    def log_in(self) -> None:
        self.set_signed_cookie(
            self.cookie_name,
            "1",
            expires_days=1,
            httponly=True,
            samesite="Strict",
            secure=self.request.protocol == "https",
        )

    def login_with(self, given: str) -> None:
        """Log in with ``given`` if it is the token (then to the page), else refuse."""
        if self.dashboard.access.accepts(given):
            self.log_in()
            self.redirect("/")  # and the token leaves the address bar
            return
        self.set_status(403)
        self.finish(_login_page("That is not the token.", self.xsrf_form_html()))

    def check_xsrf_cookie(self) -> None:
        if self.bearer():
            return
        if not self.public and not self.current_user:
            raise refused(401, "log in first")
        super().check_xsrf_cookie()

    def prepare(self) -> None:
        if self.public or self.current_user:
            return
        if self.request.method in ("GET", "HEAD") and not self.request.path.startswith(
            ("/api/", "/events")
        ):
            self.redirect("/login")
            return
        raise refused(401, "log in first")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            reason = exc.log_message % exc.args
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="toolfleet"')
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"ok": False, "message": reason}))

    def reply(self, body: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _request_summary(self) -> str:
        """The request as logs show it: no query string (``?token=`` logs in)."""
        return request_summary(self)


def request_summary(handler: tornado.web.RequestHandler) -> str:
    """``METHOD /path (client)``, never the query string."""
    request = handler.request
    return f"{request.method} {request.path} ({request.remote_ip})"


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log's line for a request, without its query string."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    took = 1000.0 * handler.request.request_time()
    access_log.log(level, "%d %s %.2fms", status, request_summary(handler), took)


class NotFoundHandler(BaseHandler):
    """Any other address: 404."""

    public = True

    def prepare(self) -> None:
        raise refused(404, "no such page")


def _login_page(message: str, xsrf: str) -> str:
    shown = f'<p class="flash bad">{html.escape(message)}</p>' if message else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>toolfleet: log in</title>"
        '<link rel="stylesheet" href="/static/style.css"></head>'
        '<body class="login"><main><h1>toolfleet</h1>'
        f'{shown}<form method="post" action="/login">{xsrf}'
        '<label>Token <input type="password" name="token" autocomplete="current-password" '
        'autofocus required></label> <button type="submit">Log in</button></form>'
        "<p>The token is in the variable <code>toolfleet web</code> reads "
        "(TOOLFLEET_WEB_TOKEN by default), or in the link it printed.</p>"
        "</main></body></html>"
    )


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
        self.finish(_login_page("", self.xsrf_form_html()))

    def post(self) -> None:
        self.login_with(self.get_body_argument("token", ""))


class LogoutHandler(BaseHandler):
    def post(self) -> None:
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


class _Stream(BaseHandler):
    """A server-sent event stream."""

    closed: asyncio.Event

    def initialize(self, dashboard: Dashboard) -> None:
        super().initialize(dashboard)
        self.closed = asyncio.Event()

    async def begin(self) -> None:
        """Send the headers (the browser's EventSource opens)."""
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("X-Accel-Buffering", "no")
        self.write("retry: 2000\n\n")
        try:
            await self.flush()
        except StreamClosedError:
            self.closed.set()

    def on_connection_close(self) -> None:
        self.closed.set()

    async def wait(self, waiter: asyncio.Event) -> None:
        """Until ``waiter`` is set (then cleared) or the connection closed; a keep-alive
        comment every :data:`KEEPALIVE` seconds meanwhile."""
        closing = asyncio.ensure_future(self.closed.wait())
        woken = asyncio.ensure_future(waiter.wait())
        try:
            done, _ = await asyncio.wait(
                {closing, woken}, timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                self.write(": keep-alive\n\n")
                await self.flush()
        finally:
            closing.cancel()
            woken.cancel()
        waiter.clear()


class EventsHandler(_Stream):
    """``/events``: the fleet's state, each time it changes (event ``state``)."""

    async def get(self) -> None:
        feed = self.dashboard.feed
        await self.begin()
        waiter = feed.subscribe()
        sent = 0
        try:
            while not self.closed.is_set():
                if feed.version != sent and feed.payload:
                    sent = feed.version
                    self.write(f"event: state\ndata: {feed.payload}\n\n")
                    await self.flush()
                    continue
                if feed.stopped:
                    break
                await self.wait(waiter)
        except StreamClosedError:
            pass
        finally:
            feed.unsubscribe(waiter)


class OutputHandler(_Stream):
    """``/events/output/PROMPT_ID``: the prompt's output as it comes (event ``chunk``,
    whose id is its index), then how it ended (``end``). ``Last-Event-ID`` resumes."""

    async def get(self, prompt_id: str) -> None:
        if not valid_prompt_id(prompt_id):
            raise refused(400, "no prompt id")
        hub = self.dashboard.output
        buffer = hub.watch(prompt_id)
        if buffer is None:
            raise refused(503, f"{hub.most} prompts' output is followed already")
        try:
            sent = int(self.request.headers.get("Last-Event-ID", "-1")) + 1
        except ValueError:
            sent = 0
        waiter = asyncio.Event()
        buffer.waiters.add(waiter)
        try:
            await self.begin()
            while not self.closed.is_set():
                with hub.lock:
                    chunks, ending = buffer.chunks[sent:], buffer.ending
                    truncated = buffer.truncated
                for index, chunk in enumerate(chunks, start=sent):
                    self.write(f"id: {index}\nevent: chunk\ndata: {json.dumps({'t': chunk})}\n\n")
                sent += len(chunks)
                if ending is not None:
                    end = {**ending, "truncated": truncated}
                    self.write(f"event: end\ndata: {json.dumps(end)}\n\n")
                    await self.flush()
                    break
                if chunks:
                    await self.flush()
                    continue
                if self.dashboard.feed.stopped:
                    break
                await self.wait(waiter)
        except StreamClosedError:
            pass
        finally:
            buffer.waiters.discard(waiter)
            hub.leave(buffer)


class ChangeHandler(BaseHandler):
    """``/api/changes/ID``: a change with its diff."""

    async def get(self, change: str) -> None:
        if not _CHANGE_ID.match(change):
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
                ids = [str(i) for i in body.get("ids") or []]
                if not ids or not all(_CHANGE_ID.match(i) for i in ids):
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
