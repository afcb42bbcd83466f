"""The fleet's state for every viewer: one read every interval, sent only when it changed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

__all__ = ["StateFeed"]

log = logging.getLogger(__name__)


class StateFeed:
    """Calls ``read`` (in ``executor``) every ``interval`` seconds while someone views
    the page (every ``idle`` seconds while nobody does), or at once when poked (a new
    viewer, an action), and hands the newest state to every viewer.

    ``finish`` turns what ``read`` returned (None after an error) and the error's
    one-line description into the page's JSON. A state equal to the last one is not
    sent again; viewers that fall behind skip to the newest state.
    """

    def __init__(
        self,
        read: Callable[[], dict[str, Any]],
        finish: Callable[[dict[str, Any] | None, str | None], dict[str, Any]],
        describe: Callable[[BaseException], str],
        executor: Executor,
        interval: float,
        idle: float = 5.0,
    ) -> None:
        self.read = read
        self.finish = finish
        self.describe = describe
        self.executor = executor
        self.interval = interval
        self.idle = max(idle, interval)
        self.version = 0
        self.payload = ""
        self._body = ""
        self._last: dict[str, Any] | None = None
        self._waiters: set[asyncio.Event] = set()
        self._poke = asyncio.Event()
        self._stopped = asyncio.Event()
        #: set after each read (then replaced), for :meth:`fresh`
        self._cycle = asyncio.Event()
        self._read_at = -math.inf

    async def run(self) -> None:
        """Read until :meth:`stop`."""
        loop = asyncio.get_running_loop()
        while not self._stopped.is_set():
            began = loop.time()
            self._poke.clear()
            try:
                state: dict[str, Any] | None = await loop.run_in_executor(self.executor, self.read)
                error = None
            except Exception as exc:
                state, error = None, self.describe(exc)
                log.warning("cannot read the fleet: %s", error)
            self.publish(state, error)
            self._cycle.set()
            self._cycle = asyncio.Event()
            every = self.interval if self._waiters else self.idle
            left = every - (loop.time() - began)
            if left > 0 and not self._poke.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), left)

    def poke(self) -> None:
        """Read again now (something changed the fleet)."""
        self._poke.set()

    async def fresh(self) -> None:
        """Return once the state is at most ``interval`` seconds old (reading it now if
        nobody views the page), or after a few seconds of trying."""
        if time.monotonic() - self._read_at <= self.interval or self._stopped.is_set():
            return
        cycle = self._cycle
        self.poke()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cycle.wait(), self.interval + 5.0)

    def stop(self) -> None:
        self._stopped.set()
        self._poke.set()
        for waiter in self._waiters:
            waiter.set()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def publish(self, state: dict[str, Any] | None, error: str | None) -> None:
        """Make ``state`` (None: keep the last one, with ``error``) the newest, if new."""
        if state is not None:
            self._last = state
            self._read_at = time.monotonic()
        page = self.finish(self._last, error)
        body = json.dumps(page, sort_keys=True)
        if body == self._body:
            return
        self._body = body
        self.version += 1
        self.payload = json.dumps({**page, "now": time.time(), "seq": self.version})
        for waiter in self._waiters:
            waiter.set()

    def subscribe(self) -> asyncio.Event:
        """An event set at each new state (clear it after reading :attr:`payload`)."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        if time.monotonic() - self._read_at > self.interval:
            self.poke()  # the feed idled: read now
        return waiter

    def unsubscribe(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)

    @property
    def latest(self) -> dict[str, Any] | None:
        """What the last successful read returned."""
        return self._last
