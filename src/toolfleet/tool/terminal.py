"""Terminal I/O with a tool's pty: exchange input for output under a deadline, and a
signal another thread uses to stop that exchange at once."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import select
import time

from ptyprocess import PtyProcess

from toolfleet.tool.detect import Matcher
from toolfleet.tool.spawn import is_alive

__all__ = ["AbortSignal", "Aborted", "Deadline", "Eof", "discard", "exchange", "read_until"]

log = logging.getLogger(__name__)

_WAKE = 0.5  # seconds between liveness checks while waiting for output


class Eof(Exception):
    """The tool closed its terminal."""


class Deadline(Exception):
    """The deadline passed before the response ended."""


class Aborted(Exception):
    """Another thread raised the :class:`AbortSignal` of the exchange."""


class AbortSignal:
    """Set from any thread (``raise_(mode, why)``) to stop the running exchange: a pipe
    wakes its ``select`` at once."""

    def __init__(self) -> None:
        self.reason: tuple[str, str] | None = None
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)

    def fileno(self) -> int:
        return self._r

    def raise_(self, mode: str, why: str) -> None:
        self.reason = (mode, why)
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
            os.write(self._w, b"x")

    def clear(self) -> None:
        self.reason = None
        self.drain()

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._r, 4096):
                pass


def read(fd: int) -> bytes:
    """What the tool wrote (Eof once it closed its terminal)."""
    try:
        chunk = os.read(fd, 65536)
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.EBADF):
            raise Eof() from None
        raise
    if not chunk:
        raise Eof()
    return chunk


def exchange(
    proc: PtyProcess | None,
    data: str,
    matcher: Matcher,
    deadline: float,
    abort: AbortSignal | None = None,
) -> None:
    """Write ``data`` while feeding output to ``matcher`` until it is satisfied; raises
    Eof, Deadline, or Aborted when ``abort`` is raised meanwhile."""
    if proc is None:
        raise Eof()
    fd = proc.fd
    watched = [fd] if abort is None else [fd, abort.fileno()]
    pending = data.encode("utf-8")
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise Deadline()
        wait = min(deadline - now, _WAKE)
        if not pending and matcher.poll is not None:
            wait = min(wait, matcher.poll)
        readable, writable, _ = select.select(watched, [fd] if pending else [], [], wait)
        if abort is not None and abort.fileno() in readable:
            abort.drain()
            if abort.reason is not None:
                raise Aborted()
            readable = [r for r in readable if r != abort.fileno()]
        if writable:
            sent = os.write(fd, pending[:4096])
            pending = pending[sent:]
        if readable:
            if matcher.feed(read(fd), time.monotonic()):
                return
        elif not writable:
            if not pending and matcher.idle(time.monotonic()):
                return
            if not is_alive(proc):
                raise Eof()


def read_until(proc: PtyProcess | None, pattern: re.Pattern[bytes], deadline: float) -> None:
    """Read until ``pattern`` shows in the output (Eof, Deadline)."""
    if proc is None:
        raise Eof()
    tail = b""
    while pattern.search(tail) is None:
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise Deadline()
        if select.select([proc.fd], [], [], min(wait, _WAKE))[0]:
            tail = (tail + read(proc.fd))[-4096:]
        elif not is_alive(proc):
            raise Eof()


def discard(proc: PtyProcess | None, quiet: float) -> None:
    """Drop output that is waiting (until ``quiet`` seconds pass without any)."""
    if proc is None:
        return
    while select.select([proc.fd], [], [], quiet)[0]:
        dropped = read(proc.fd)
        log.debug("discarded %d bytes of stray output", len(dropped))
