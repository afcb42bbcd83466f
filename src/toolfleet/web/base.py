"""The handlers' base: the token check, XSRF, security headers, JSON errors, the access log."""

from __future__ import annotations

import html
import json
import logging
from typing import TYPE_CHECKING, Any

import tornado.web
from tornado.log import access_log

if TYPE_CHECKING:
    from toolfleet.web.app import Dashboard

__all__ = ["BaseHandler", "log_request", "login_page", "refused", "request_summary"]

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
        self.finish(login_page("That is not the token.", self.xsrf_form_html()))

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


def login_page(message: str, xsrf: str) -> str:
    """The login form's page (``xsrf``: the form's hidden field), ``message`` above it."""
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
