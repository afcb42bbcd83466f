"""When to start a tool again: after a failed start (backoff, crash loop) and to recycle it."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from toolfleet.profiles import Profile
from toolfleet.tool.interface import ToolSnapshot

__all__ = ["RestartPolicy", "recycle_reason"]

MAX_BACKOFF = 30.0
# a tool that answered a prompt or ran this long was healthy: its death is no crash loop
STABLE_AFTER = 10.0


class RestartPolicy:
    """Counts failed starts in the profile's crash-loop window and says when to retry."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._attempts: deque[float] = deque()
        #: time.monotonic() of the next start attempt
        self.retry_at = 0.0

    def clear(self) -> None:
        """Forget earlier failures (a requested restart, a tool that had been stable)."""
        self._attempts.clear()

    def died(self, prompts_served: int, uptime: float) -> None:
        """A running tool died: forget earlier failures when it had been healthy."""
        if prompts_served > 0 or uptime >= STABLE_AFTER:
            self.clear()

    def failed(self, why: str) -> str | None:
        """Count a failed start and schedule the next; the crash-loop reason if this was
        one failure too many within the window, else None."""
        now = time.monotonic()
        self._attempts.append(now)
        window = self.profile.crash_loop_window
        while self._attempts and now - self._attempts[0] > window:
            self._attempts.popleft()
        tries = len(self._attempts)
        if tries >= self.profile.crash_loop_restarts:
            return f"crash loop: {tries} failed starts in {window:g} s; last: {why}"
        delay = 0.0 if tries == 1 else self.profile.restart_backoff * 2 ** (tries - 2)
        self.retry_at = now + min(MAX_BACKOFF, delay)
        return None

    @property
    def due(self) -> bool:
        """Whether the next start attempt may be made now."""
        return time.monotonic() >= self.retry_at

    @property
    def wait(self) -> float:
        """Seconds until the next start attempt (0 when due)."""
        return max(0.0, self.retry_at - time.monotonic())


def recycle_reason(profile: Profile, snapshot: Callable[[], ToolSnapshot]) -> str | None:
    """Why a tool should be recycled now (max_prompts, max_age, max_rss), or None; takes
    no snapshot when the profile sets no limit."""
    if profile.max_prompts is None and profile.max_age is None and profile.max_rss is None:
        return None
    snap = snapshot()
    if profile.max_prompts is not None and snap.prompts_served >= profile.max_prompts:
        return f"served {snap.prompts_served} prompts (max_prompts {profile.max_prompts})"
    if profile.max_age is not None and snap.uptime >= profile.max_age:
        return f"up {snap.uptime:.0f} s (max_age {profile.max_age:g})"
    if profile.max_rss is not None and (snap.rss_bytes or 0) >= profile.max_rss:
        return f"RSS {snap.rss_bytes} bytes (max_rss {profile.max_rss})"
    return None
