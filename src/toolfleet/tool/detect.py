"""End-of-response detection: interchangeable strategies behind one interface.

A :class:`Detector` belongs to one instance; for each prompt it makes a :class:`Matcher`
that is fed the tool's output and says when the response is complete.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from toolfleet.profiles import Profile

__all__ = [
    "Detector",
    "Marker",
    "Matcher",
    "Quiescence",
    "Reply",
    "Sentinel",
    "make_detector",
]


@dataclass(frozen=True)
class Reply:
    """Raw bytes of one response, as delimited by a detector."""

    output: bytes
    truncated: bool = False
    status: int | None = None
    incomplete: bool = False


class Matcher(ABC):
    """Collects one response's output, capped at ``limit`` bytes."""

    #: seconds to wait for more output before calling :meth:`idle`; None blocks
    poll: float | None = None

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._out = bytearray()
        self._truncated = False
        self._status: int | None = None
        self._incomplete = False

    def _keep(self, data: bytes | bytearray) -> None:
        room = self._limit - len(self._out)
        if len(data) > room:
            self._truncated = True
            data = data[: max(room, 0)]
        self._out += data

    @abstractmethod
    def feed(self, data: bytes, now: float) -> bool:
        """Take output; True when the response is complete."""

    def idle(self, now: float) -> bool:
        """No output arrived for :attr:`poll` seconds; True when that completes it."""
        return False

    @property
    def seen_output(self) -> bool:
        return bool(self._out)

    def so_far(self) -> bytes:
        """The response's output until now (safe to call from another thread): what was
        kept, and the complete lines of what is held back while it could still be the
        start of the end marker (a whole line that were the marker would have ended it)."""
        pending = bytes(getattr(self, "_pending", b""))
        cut = pending.rfind(b"\n")
        return bytes(self._out) + (pending[: cut + 1] if cut >= 0 else b"")

    def reply(self) -> Reply:
        return Reply(bytes(self._out), self._truncated, self._status, self._incomplete)


class Detector(ABC):
    """Makes the per-prompt matchers of one instance."""

    @abstractmethod
    def begin(self, prompts: int, tag: str, limit: int) -> Matcher:
        """A matcher for a prompt whose typed text makes the tool show ``prompts`` prompts."""

    def suffix(self, tag: str) -> str:
        """Text typed after the prompt (the sentinel command); empty by default."""
        return ""

    def guards(self) -> tuple[str, ...]:
        """Strings a prompt must not contain (they would fake the end of a response)."""
        return ()


class Marker(Detector):
    """The tool shows a (nonce-carrying) prompt string when it is ready for input.

    Every input line makes the tool show one prompt, main or continuation; the response
    is complete at the ``prompts``-th. If that one is a continuation prompt the input was
    incomplete. A marker without a nonce must end the output and be followed by
    ``settle`` seconds of silence, so output that merely contains it cannot end a reply.
    """

    def __init__(self, main: str, continuation: str | None = None, settle: float = 0.0) -> None:
        self.main = main.encode()
        self.continuation = continuation.encode() if continuation else None
        self.settle = settle
        parts = [re.escape(self.main)]
        if self.continuation:
            parts.append(re.escape(self.continuation))
        self.pattern = re.compile(b"|".join(parts))
        self.width = max(len(self.main), len(self.continuation or b""))

    def begin(self, prompts: int, tag: str, limit: int) -> Matcher:
        return _MarkerMatcher(self, max(prompts, 1), limit)

    def guards(self) -> tuple[str, ...]:
        found = [self.main.decode()]
        if self.continuation:
            found.append(self.continuation.decode())
        return tuple(found) if self.settle == 0 else ()


class _MarkerMatcher(Matcher):
    def __init__(self, det: Marker, prompts: int, limit: int) -> None:
        super().__init__(limit)
        self._det = det
        self._left = prompts
        self._pending = bytearray()
        self._candidate_at: float | None = None
        self.poll = det.settle if det.settle > 0 else None

    def feed(self, data: bytes, now: float) -> bool:
        if self._candidate_at is not None:
            # more output after a nonce-less marker: it was part of the response
            self._keep(self._det.main)
            self._candidate_at = None
        self._pending += data
        while True:
            match = self._det.pattern.search(self._pending)
            if match is None:
                keep = self._det.width - 1
                if len(self._pending) > keep:
                    cut = len(self._pending) - keep
                    self._keep(self._pending[:cut])
                    del self._pending[:cut]
                return False
            is_cont = match.group() != self._det.main
            last = self._left == 1
            if last and self._det.settle > 0 and not is_cont:
                if match.end() < len(self._pending):
                    # a marker with more output after it is just output
                    self._keep(self._pending[: match.end()])
                    del self._pending[: match.end()]
                    continue
                self._keep(self._pending[: match.start()])
                self._pending.clear()
                self._candidate_at = now
                return False
            self._keep(self._pending[: match.start()])
            del self._pending[: match.end()]
            self._left -= 1
            if self._left == 0:
                self._incomplete = is_cont
                return True

    def idle(self, now: float) -> bool:
        if self._candidate_at is not None and now - self._candidate_at >= self._det.settle:
            self._left = 0
            return True
        return False


class Sentinel(Detector):
    """After the prompt, a command prints a per-prompt nonce and the exit status.

    The command's text holds the nonce in two halves, so the typed command (should the
    tool echo it) never matches; only its output does.
    """

    def __init__(self, command: str) -> None:
        self.command = command

    def suffix(self, tag: str) -> str:
        head, tail = tag[: len(tag) // 2], tag[len(tag) // 2 :]
        return self.command.replace("{head}", head).replace("{tail}", tail) + "\n"

    def begin(self, prompts: int, tag: str, limit: int) -> Matcher:
        return _SentinelMatcher(tag, limit)


class _SentinelMatcher(Matcher):
    def __init__(self, tag: str, limit: int) -> None:
        super().__init__(limit)
        self._pattern = re.compile(re.escape(tag.encode()) + rb":(-?\d+)\r?\n")
        self._width = len(tag) + 16
        self._pending = bytearray()

    def feed(self, data: bytes, now: float) -> bool:
        self._pending += data
        match = self._pattern.search(self._pending)
        if match is None:
            if len(self._pending) > self._width:
                cut = len(self._pending) - self._width
                self._keep(self._pending[:cut])
                del self._pending[:cut]
            return False
        self._keep(self._pending[: match.start()])
        self._status = int(match.group(1))
        return True


class Quiescence(Detector):
    """The response ends after ``quiet`` seconds without output once output began.

    A prompt that prints nothing at all ends after ``silent`` seconds.
    """

    def __init__(self, quiet: float, silent: float | None = None) -> None:
        self.quiet = quiet
        self.silent = silent if silent is not None else 4 * quiet

    def begin(self, prompts: int, tag: str, limit: int) -> Matcher:
        return _QuietMatcher(self, limit)


class _QuietMatcher(Matcher):
    def __init__(self, det: Quiescence, limit: int) -> None:
        super().__init__(limit)
        self._det = det
        self._started = time.monotonic()
        self._last: float | None = None
        self.poll = det.quiet / 4

    def feed(self, data: bytes, now: float) -> bool:
        self._keep(data)
        self._last = now
        return False

    def idle(self, now: float) -> bool:
        if self._last is None:
            return now - self._started >= self._det.silent
        return now - self._last >= self._det.quiet


def make_detector(profile: Profile, marker: str, continuation: str | None) -> Detector:
    """The end-of-response strategy a profile names, bound to this instance's markers."""
    if profile.detector == "sentinel":
        if not profile.sentinel:
            raise ValueError(f"profile {profile.name!r}: the sentinel detector needs 'sentinel'")
        return Sentinel(profile.sentinel)
    if profile.detector == "quiescence":
        return Quiescence(profile.quiet_ms / 1000)
    return Marker(marker, continuation, settle=profile.settle_ms / 1000)
