"""The dashboard process: what its handlers share, the Tornado application, and serving."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from toolfleet._version import __version__
from toolfleet.client.changes import ApplyResult
from toolfleet.client.fleet import Fleet
from toolfleet.client.unavailable import unavailable
from toolfleet.settings import Settings, redact_url
from toolfleet.web.access import Access, Scrubber, Sessions
from toolfleet.web.actions import Actions, checkout_of
from toolfleet.web.base import StaticHandler, log_request
from toolfleet.web.feed import StateFeed
from toolfleet.web.handlers import (
    STATIC,
    ActionHandler,
    ChangeHandler,
    HealthHandler,
    IndexHandler,
    LoginHandler,
    LogoutHandler,
    NotFoundHandler,
    StateHandler,
)
from toolfleet.web.output import OutputHub
from toolfleet.web.streams import EventsHandler, OutputHandler
from toolfleet.web.view import FleetView

__all__ = ["Dashboard", "make_app", "serve"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_EMPTY: dict[str, Any] = {"instances": [], "sessions": [], "runs": [], "changes": []}


class Dashboard:
    """What every request of one ``toolfleet web`` shares: the fleet's state (one
    :class:`FleetView` read an interval, whatever the number of viewers), the output
    streams, the actions, and the token."""

    def __init__(
        self,
        settings: Settings,
        access: Access,
        *,
        repo: Path | None = None,
        interval: float = 0.5,
    ) -> None:
        self.settings = settings
        self.access = access
        self.sessions = Sessions()
        self.fleet = Fleet(settings)
        # one thread-safe client for every thread (Celery keeps a backend per thread)
        client = self.fleet.app.backend.client
        self.view = FleetView(client)
        self.scrub = Scrubber.of(settings, access)
        checkout, why = checkout_of(repo)
        self.actions = Actions(self.fleet, self.fleet.changes, checkout, why)
        self._reader = ThreadPoolExecutor(1, "toolfleet-web-read")
        self._doer = ThreadPoolExecutor(1, "toolfleet-web-act")
        self._asker = ThreadPoolExecutor(2, "toolfleet-web-ask")
        #: change id -> the files of its last apply's conflict
        self.conflicts: dict[str, list[str]] = {}
        self.feed = StateFeed(self.view.read, self.page, self.describe, self._reader, interval)
        self.output = OutputHub(client, self.fleet.app.backend.get_key_for_task, self.scrub)
        self.meta: dict[str, Any] = {
            "fleet": redact_url(settings.broker_url),
            "interval": interval,
            "health_ttl": settings.health_ttl,
            "version": __version__,
            "apply": {
                "enabled": checkout is not None,
                "reason": why,
                "repo": "" if checkout is None else str(checkout),
            },
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def describe(self, exc: BaseException) -> str:
        """``exc`` in one line, any URL masked."""
        mapped = unavailable(exc, self.settings)
        text = mapped.message if mapped is not None else f"{type(exc).__name__}: {exc}"
        return self.scrub.text(text)

    def page(self, state: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
        """The page's JSON: ``state`` with the dashboard's own facts, scrubbed."""
        page = {**self.meta, **(state or _EMPTY), "error": error}
        page["changes"] = [
            {**row, "conflict": self.conflicts.get(row["id"])} for row in page["changes"]
        ]
        scrubbed: dict[str, Any] = self.scrub.data(page)
        return scrubbed

    def workers(self) -> set[str]:
        """The workers the page shows now."""
        state = self.feed.latest or _EMPTY
        return {row["worker"] for row in state["instances"]}

    def noted(self, result: ApplyResult) -> None:
        """Remember an apply's conflicts (shown beside their changes)."""
        for change in result.applied + result.empty:
            self.conflicts.pop(change, None)
        self.conflicts.update(result.conflicts)
        self.feed.publish(None, None)

    async def act(self, action: Callable[..., T], *args: Any) -> T:
        """Run ``action`` in the actions' thread, then read the fleet again at once."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._doer, action, *args)
        finally:
            self.view.refresh_changes()
            self.feed.poke()

    async def query(self, read: Callable[..., T], *args: Any) -> T:
        """Run ``read`` (a Redis read for one request) in a thread."""
        return await asyncio.get_running_loop().run_in_executor(self._asker, read, *args)

    def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.output.start(loop)
        self._tasks.append(loop.create_task(self.feed.run()))

    def shutdown(self) -> None:
        """Ask :func:`serve` to stop (from any thread, or a signal handler)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def stopped(self) -> None:
        """Until :meth:`shutdown` is called."""
        assert self._stop is not None
        await self._stop.wait()

    async def stop(self) -> None:
        self.feed.stop()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.output.stop()

    def close(self) -> None:
        """Release threads and connections (after :meth:`stop`)."""
        with contextlib.suppress(Exception):
            self._doer.submit(self.actions.release).result(timeout=5)
        for pool in (self._reader, self._doer, self._asker):
            pool.shutdown(wait=True, cancel_futures=True)
        self.fleet.close()


def make_app(dashboard: Dashboard, cookie: str = "toolfleet_web") -> tornado.web.Application:
    """The Tornado application of ``dashboard`` (its login cookie named ``cookie``)."""
    shared = {"dashboard": dashboard}
    return tornado.web.Application(
        [
            (r"/", IndexHandler, shared),
            (r"/login", LoginHandler, shared),
            (r"/logout", LogoutHandler, shared),
            (r"/healthz", HealthHandler, shared),
            (r"/api/state", StateHandler, shared),
            (r"/api/changes/([^/]+)", ChangeHandler, shared),
            (r"/api/(cancel|restart|apply|discard)", ActionHandler, shared),
            (r"/events", EventsHandler, shared),
            (r"/events/output/([^/]+)", OutputHandler, shared),
        ],
        static_path=str(STATIC),
        static_handler_class=StaticHandler,
        cookie_secret=dashboard.access.cookie_secret,
        login_cookie=cookie,
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"samesite": "Strict"},
        default_handler_class=NotFoundHandler,
        default_handler_args=shared,
        log_function=log_request,
    )


async def serve(
    settings: Settings,
    access: Access,
    *,
    address: str = "127.0.0.1",
    port: int = 8088,
    repo: Path | None = None,
    interval: float = 0.5,
    ready: Callable[[Dashboard, int], None] | None = None,
    signals: bool = True,
) -> None:
    """Serve the dashboard on ``address``:``port`` (0: any free port) until SIGTERM or
    SIGINT (with ``signals``) or ``Dashboard.shutdown``; ``ready`` is called with the
    dashboard and its port once it listens. OSError if it cannot."""
    dashboard = Dashboard(settings, access, repo=repo, interval=interval)
    try:
        sockets = bind_sockets(port, address, family=socket.AF_UNSPEC)
        bound = int(sockets[0].getsockname()[1])
        server = HTTPServer(make_app(dashboard, f"toolfleet_web_{bound}"), xheaders=False)
        server.add_sockets(sockets)
        dashboard.start()
        if signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, dashboard.shutdown)
        if ready is not None:
            ready(dashboard, bound)
        await dashboard.stopped()
        server.stop()
        await dashboard.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), 5)
    finally:
        dashboard.close()
