"""Running prompts' output for the page: one thread reads every watched stream at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from toolfleet.keys import STREAM_END, RedisLike, stream_key, text
from toolfleet.web.access import Scrubber

__all__ = ["OutputBuffer", "OutputHub", "ending_of"]

log = logging.getLogger(__name__)


def ending_of(meta: dict[str, Any]) -> dict[str, Any]:
    """How a prompt ended, from its Celery result: ``status`` is ``ok``, ``failed`` (the
    tool reported an error) or the error's type (``PromptCancelled``, ``ToolCrashed``,
    ...), with its ``message`` and the ``output`` when there is an answer."""
    status, result = meta.get("status"), meta.get("result")
    if status == "SUCCESS" and isinstance(result, dict):
        ok = bool(result.get("ok", True))
        return {"status": "ok" if ok else "failed", "message": "", "output": result.get("output")}
    if status == "REVOKED":
        return {"status": "PromptCancelled", "message": "cancelled before it ran", "output": None}
    if status == "FAILURE" and isinstance(result, dict):
        kind = str(result.get("exc_type") or "Error")
        args = result.get("exc_message")
        args = list(args) if isinstance(args, list | tuple) else [args]
        message = str(args[0]) if args and args[0] is not None else ""
        answer = args[1] if kind == "ToolError" and len(args) > 1 else None
        if isinstance(answer, dict):  # the tool answered and reported an error
            return {"status": "failed", "message": message, "output": answer.get("output")}
        return {"status": kind, "message": message, "output": None}
    return {"status": str(status or "unknown"), "message": "", "output": None}


class OutputBuffer:
    """One prompt's output so far, shared by everyone watching it."""

    def __init__(self, prompt_id: str, cap: int) -> None:
        self.prompt_id = prompt_id
        self.key = stream_key(prompt_id)
        self.cap = cap
        #: the id of the last stream entry read
        self.position = "0"
        self.chunks: list[str] = []
        self.size = 0
        self.truncated = False
        #: the stream's end mark was read (the result follows)
        self.marked = False
        #: how it ended (see :func:`ending_of`), once its result is stored
        self.ending: dict[str, Any] | None = None
        self.viewers = 0
        self.idle_since = time.monotonic()
        self.waiters: set[asyncio.Event] = set()

    def add(self, text: str) -> None:
        if self.truncated or not text:
            return
        if self.size + len(text) > self.cap:
            text = text[: self.cap - self.size]
            self.truncated = True
        self.chunks.append(text)
        self.size += len(text)


class OutputHub:
    """Follows the output streams of the prompts someone watches: one thread, one
    blocking XREAD over all of them (``block_ms``), and every ``check_every`` seconds one
    MGET of their results, to end those that finished (also those with no stream: a
    prompt answered within 100 ms). A buffer nobody watches for ``linger`` seconds is
    dropped; each keeps at most ``cap`` characters, and at most ``most`` are followed."""

    def __init__(
        self,
        client: RedisLike,
        result_key: Callable[[str], Any],
        scrub: Scrubber,
        *,
        block_ms: int = 250,
        check_every: float = 0.25,
        cap: int = 1 << 20,
        linger: float = 30.0,
        most: int = 256,
    ) -> None:
        self.client: Any = client
        self.result_key = result_key
        self.scrub = scrub
        self.block_ms = block_ms
        self.check_every = check_every
        self.cap = cap
        self.linger = linger
        self.most = most
        self.buffers: dict[str, OutputBuffer] = {}
        self.lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="toolfleet-web-output", daemon=True)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    # -- the event loop's side

    def watch(self, prompt_id: str) -> OutputBuffer | None:
        """The buffer of ``prompt_id`` with one more viewer (followed from now on), or
        None when ``most`` prompts are followed already."""
        with self.lock:
            buffer = self.buffers.get(prompt_id)
            if buffer is None:
                if len(self.buffers) >= self.most:
                    return None
                buffer = self.buffers[prompt_id] = OutputBuffer(prompt_id, self.cap)
            buffer.viewers += 1
        self._wake.set()
        return buffer

    def leave(self, buffer: OutputBuffer) -> None:
        with self.lock:
            buffer.viewers -= 1
            buffer.idle_since = time.monotonic()

    def _notify(self, buffer: OutputBuffer) -> None:
        for waiter in buffer.waiters:
            waiter.set()

    # -- the reading thread

    def _changed(self, buffer: OutputBuffer) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._notify, buffer)

    def _run(self) -> None:
        checked = 0.0
        while not self._stop.is_set():
            with self.lock:
                following = {b.key: b.position for b in self.buffers.values() if not b.marked}
                open_ = any(b.ending is None for b in self.buffers.values())
            if not open_:
                self._wake.wait(1.0)
                self._wake.clear()
                self._prune()
                continue
            try:
                if following:
                    self._take(self.client.xread(following, count=1000, block=self.block_ms))
                else:
                    self._stop.wait(self.check_every)
                if time.monotonic() - checked >= self.check_every:
                    checked = time.monotonic()
                    self._check_results()
            except Exception as exc:  # Redis away: try again in a second
                log.warning("reading output streams: %s", exc)
                self._stop.wait(1.0)
            self._prune()

    def _take(self, entries: Any) -> None:
        for key, items in entries or []:
            prompt_id = text(key, "replace").rpartition(":")[2]
            with self.lock:
                buffer = self.buffers.get(prompt_id)
                if buffer is None:
                    continue
                for entry_id, fields in items:
                    buffer.position = text(entry_id, "replace")
                    named = {text(k, "replace"): v for k, v in fields.items()}
                    if STREAM_END in named:
                        buffer.marked = True
                        break
                    buffer.add(self.scrub.text(text(named.get("t", ""), "replace")))
            self._changed(buffer)

    def _check_results(self) -> None:
        with self.lock:
            open_ = [b for b in self.buffers.values() if b.ending is None]
        if not open_:
            return
        metas = self.client.mget([self.result_key(b.prompt_id) for b in open_])
        for buffer, raw in zip(open_, metas, strict=True):
            if raw is None:
                continue
            if not buffer.marked:  # what the stream holds beyond the last read
                self._take(self.client.xread({buffer.key: buffer.position}, count=10_000))
            try:
                ending = ending_of(json.loads(raw))
            except ValueError:
                ending = {"status": "unknown", "message": "unreadable result", "output": None}
            output = ending.pop("output", None)
            with self.lock:
                so_far = "".join(buffer.chunks)
                if isinstance(output, str) and output.startswith(so_far):
                    buffer.add(self.scrub.text(output[len(so_far) :]))
                ending["message"] = self.scrub.text(str(ending["message"]))
                buffer.ending = ending
                buffer.marked = True
            self._changed(buffer)

    def _prune(self) -> None:
        cutoff = time.monotonic() - self.linger
        with self.lock:
            for prompt_id in [
                p for p, b in self.buffers.items() if b.viewers <= 0 and b.idle_since < cutoff
            ]:
                del self.buffers[prompt_id]
