"""A scripted in-memory tool instance with ToolInstance's interface, for tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from toolfleet.errors import ToolCrashed
from toolfleet.profiles import Profile
from toolfleet.tool.interface import Answer, ToolSnapshot
from toolfleet.validation import validate_prompt

__all__ = ["FakeInstance"]


def _echo(text: str) -> str:
    return text


class FakeInstance:
    """Answers with ``respond(text)``; an exception it raises is raised by :meth:`ask`."""

    def __init__(self, profile: Profile, respond: Callable[[str], str] = _echo) -> None:
        self.profile = profile
        self.respond = respond
        self.generation = 0
        self.prompts_served = 0
        self.asked: list[str] = []
        self.last_error: str | None = None
        self.started_at = time.time()
        self._alive = False
        self._next_pid = 1000

    def start(self) -> None:
        if not self._alive:
            self.generation += 1
            self.prompts_served = 0
            self._next_pid += 1
            self._alive = True
            self.started_at = time.time()

    def alive(self) -> bool:
        return self._alive

    @property
    def pid(self) -> int | None:
        return self._next_pid if self._alive else None

    def crash(self) -> None:
        """Make the tool 'die' as if killed."""
        self._alive = False

    def ask(self, text: str, timeout: float | None = None) -> Answer:
        text = validate_prompt(text, max_bytes=self.profile.max_prompt_bytes)
        if not self._alive:
            raise ToolCrashed(f"{self.profile.name} is not running")
        self.asked.append(text)
        output = self.respond(text)
        self.prompts_served += 1
        return Answer(output, True, None, False, 0.1)

    def interrupt(self) -> bool:
        return self._alive

    def reset(self) -> bool:
        """The fake has no reset of its own (its profile's commands, or a restart)."""
        return False

    def partial(self) -> str | None:
        """The fake's answers are never in progress."""
        return None

    def abort(self, mode: str, why: str) -> bool:
        """The fake answers at once: there is never a running prompt to stop."""
        return False

    def restart(self) -> None:
        self._alive = False
        self.start()

    def close(self, grace: float | None = None) -> None:
        self._alive = False

    def snapshot(self) -> ToolSnapshot:
        return ToolSnapshot(
            pid=self.pid,
            generation=self.generation,
            state="ready" if self._alive else "down",
            prompts_served=self.prompts_served,
            last_latency_ms=None,
            p50_latency_ms=None,
            p95_latency_ms=None,
            rss_bytes=None,
            started_at=self.started_at,
            uptime=time.time() - self.started_at,
            last_error=self.last_error,
        )
