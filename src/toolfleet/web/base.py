"""The handlers' base: the token check, XSRF, security headers, JSON errors, the access log."""

from __future__ import annotations

import html
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import tornado.web
from tornado.log import access_log

from toolfleet.web.access import host_allowed

if TYPE_CHECKING:
    from toolfleet.web.app import Dashboard

__all__ = [
    "BaseHandler",
    "StaticHandler",
    "log_request",
    "login_page",
    "refused",
    "request_summary",
]

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
    cookie (a random session id, ended by logging out) or ``Authorization: Bearer TOKEN``.

    Every request must name this server in its Host header (a DNS rebinding names
    another). A POST is refused when its ``Origin`` or ``Sec-Fetch-Site`` says another
    site or origin sent it (another port of 127.0.0.1 is one: cookies do not tell ports
    apart). A POST to ``/api/`` with the cookie also needs an ``application/json`` body
    and the ``_xsrf`` cookie's value in an ``X-XSRFToken`` header, never in the body or
    the query (a page elsewhere can set that cookie, not that header); a POST with the
    bearer token needs nothing more."""

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

    def session(self) -> str | None:
        """The login cookie's session id (signed; not checked against the live ones)."""
        value = self.get_signed_cookie(self.cookie_name, max_age_days=1)
        return value.decode() if value else None

    def get_current_user(self) -> str | None:
        if self.bearer():
            return "bearer"
        if self.dashboard.sessions.valid(self.session()):
            return "cookie"
        return None

    def log_in(self) -> None:
        request = self.request
        self.set_signed_cookie(
            self.cookie_name,
            self.dashboard.sessions.open(),
            expires_days=1,
            httponly=True,
            samesite="Strict",
            secure=self.dashboard.access.came_over_tls(
                request.protocol, request.remote_ip or "", request.headers.get("X-Forwarded-Proto")
            ),
        )

    def login_with(self, given: str) -> None:
        """Log in with ``given`` if it is the token (then to the page), else refuse."""
        if self.dashboard.access.accepts(given):
            self.log_in()
            self.redirect("/")  # and the token leaves the address bar
            return
        self.set_status(403)
        self.finish(login_page("That is not the token.", self.xsrf_form_html()))

    def guard(self) -> None:
        """Refuse a request naming another host, or a POST another origin sent (asked
        before the XSRF check and again in prepare: it costs a few comparisons)."""
        request = self.request
        if not host_allowed(request.host, self.dashboard.access.hosts):
            raise refused(403, "this server does not answer to that host name")
        if request.method in ("GET", "HEAD"):
            return
        # a browser's own word on who sent the request; our pages' forms send
        # "Origin: null" under their no-referrer policy, so Origin is looked at only
        # where the browser sends no Sec-Fetch-Site (an old one)
        site = request.headers.get("Sec-Fetch-Site")
        if site:
            if site not in ("same-origin", "none"):
                raise refused(403, f"a {site} request is refused")
            return
        origin = request.headers.get("Origin")
        if origin is not None:
            parsed = urlparse(origin)
            if parsed.netloc.lower() != request.host.lower() or parsed.scheme not in (
                "http",
                "https",
            ):
                raise refused(403, "a request from another origin is refused")

    def check_xsrf_cookie(self) -> None:
        self.guard()
        if self.bearer():
            return
        if not self.public and not self.current_user:
            raise refused(401, "log in first")
        if self.request.path.startswith("/api/"):
            kind = self.request.headers.get("Content-Type", "").partition(";")[0]
            if kind.strip().lower() != "application/json":
                raise refused(415, "the body must be application/json")
            if self.get_arguments("_xsrf") or "X-Xsrftoken" not in self.request.headers:
                raise refused(403, "the XSRF token goes in the X-XSRFToken header only")
        super().check_xsrf_cookie()

    def prepare(self) -> None:
        self.guard()
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


class StaticHandler(tornado.web.StaticFileHandler):
    """The page's files, with the same security headers as every other answer."""

    def set_default_headers(self) -> None:
        for name, value in _SECURITY_HEADERS.items():
            if name != "Cache-Control":  # static files may be cached
                self.set_header(name, value)


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
