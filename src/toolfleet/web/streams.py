"""The dashboard's server-sent event streams: the fleet's state, and a prompt's output."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from tornado.iostream import StreamClosedError

from toolfleet.web.actions import valid_prompt_id
from toolfleet.web.base import BaseHandler, refused

if TYPE_CHECKING:
    from toolfleet.web.app import Dashboard

__all__ = ["KEEPALIVE", "EventsHandler", "OutputHandler"]

#: seconds between keep-alive comments on an idle event stream
KEEPALIVE = 15.0


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
