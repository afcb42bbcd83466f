"""Streams a running prompt's output to a Redis Stream, at most every 100 ms."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from toolfleet.keys import STREAM_END, RedisLike, stream_key

__all__ = ["OutputStreamer", "Streamer"]

log = logging.getLogger(__name__)


class Streamer(Protocol):
    """What a supervisor calls around each prompt (an OutputStreamer)."""

    def begin(self, prompt_id: str) -> None: ...
    def end(self, output: str | None = None) -> None: ...


class OutputStreamer:
    """One thread a worker: while a prompt runs longer than ``interval``, every
    ``interval`` it appends the output that came since the last look to the prompt's
    stream (``{"t": text}``), then ``{"end": "1"}`` when the prompt ends. A prompt that
    ends within ``interval`` costs no Redis command. The stream is capped at ``maxlen``
    entries and expires ``ttl`` seconds after its first entry (with the result)."""

    def __init__(
        self,
        client: RedisLike,
        partial: Callable[[], str | None],
        *,
        interval: float = 0.1,
        maxlen: int = 10_000,
        ttl: float = 86400.0,
    ) -> None:
        self.client = client
        self.partial = partial
        self.interval = interval
        self.maxlen = maxlen
        self.ttl = ttl
        self._lock = threading.Lock()
        self._prompt: str | None = None
        self._began = 0.0
        self._sent = 0  # characters of the output sent so far
        self._sent_text = ""  # and those characters
        self._opened = False  # the stream has entries
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="toolfleet-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def begin(self, prompt_id: str) -> None:
        """A prompt starts (called by the thread that runs it)."""
        with self._lock:
            self._prompt, self._began, self._opened = prompt_id, time.monotonic(), False
            self._sent, self._sent_text = 0, ""

    def end(self, output: str | None = None) -> None:
        """The prompt ended with ``output`` (None: it failed): its stream, if it has one,
        gets the rest of the output and its end mark."""
        with self._lock:
            try:
                if self._prompt is not None and self._opened:
                    self._send(final=True, output=output)
            except Exception as exc:  # Redis away: readers end with the result
                log.warning("stream of %s: %s", self._prompt, exc)
            finally:
                self._prompt = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._prompt is None or time.monotonic() - self._began < self.interval:
                    continue
                try:
                    self._send(final=False)
                except Exception as exc:  # Redis away: the result still comes
                    log.warning("stream of %s: %s", self._prompt, exc)

    def _send(self, final: bool, output: str | None = None) -> None:
        """Append the new output (and, when ``final``, the end mark); ``output``, the
        prompt's final output, replaces the look at the running output when it goes on
        from what was sent."""
        assert self._prompt is not None
        key = stream_key(self._prompt)
        text = self.partial() or ""
        if output is not None and output.startswith(self._sent_text):
            text = output
        if len(text) > self._sent and text.startswith(self._sent_text):
            self.client.xadd(key, {"t": text[self._sent :]}, maxlen=self.maxlen, approximate=True)
            self._sent = len(text)
            self._sent_text = text
            if not self._opened:
                self._opened = True
                self.client.expire(key, int(self.ttl))
        if final and self._opened:
            self.client.xadd(key, {STREAM_END: "1"}, maxlen=self.maxlen, approximate=True)
