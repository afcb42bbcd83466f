"""What a fault test counts: prompts submitted, answered right or wrong, failed by type,
lost, run twice (from what the tools ran, not from what was answered); and Redis
killed and brought back on its own data."""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolfleet import Fleet, PromptResult, ToolfleetError
from toolfleet.cli.local import EmbeddedRedis

__all__ = ["Tally", "answers", "crash_redis", "runs"]

#: typed failures that mean "no outcome": the prompt was lost
LOST = ("ResultTimeout", "NoWorkers")


def runs(log: Path) -> Counter[str]:
    """How many times each prompt ran, by its tag (the last word the echo tool logged)."""
    if not log.exists():
        return Counter()
    return Counter(line.rsplit(" ", 1)[-1] for line in log.read_text().splitlines())


@dataclass
class Tally:
    """One fault test's figures, printed as a JSON line and checked."""

    test: str
    submitted: int = 0
    ok: int = 0
    wrong: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    ran_twice: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def count(self, outcome: str | None, right: bool = True) -> None:
        """One prompt's outcome: "ok", a typed failure's name, or None (no outcome)."""
        if outcome is None or outcome in LOST:
            self.lost += 1
            if outcome is not None:
                self.failed[outcome] += 1
        elif outcome == "ok":
            self.ok += 1
            self.wrong += not right
        else:
            self.failed[outcome] += 1

    def ran(self, log: Path, tags: list[str]) -> Counter[str]:
        """Count from the tools' log: ``ran_twice``; every tag that never ran is lost
        unless a typed failure already accounts for it. The runs, by tag."""
        counts = runs(log)
        self.ran_twice = sum(1 for tag in tags if counts[tag] > 1)
        return counts

    def show(self) -> str:
        line = json.dumps(
            {
                "test": self.test,
                "submitted": self.submitted,
                "ok": self.ok,
                "wrong": self.wrong,
                "failed": dict(self.failed),
                "lost": self.lost,
                "ran_twice": self.ran_twice,
                "faults": dict(self.faults),
                "seconds": round(self.seconds, 1),
            }
        )
        print(f"TALLY {line}")
        return line


def answers(
    fleet: Fleet, texts: list[str], profile: str, in_flight: int = 64
) -> Iterator[tuple[int, PromptResult | str]]:
    """Send ``texts`` with at most ``in_flight`` waiting, and yield, in order, each one's
    index and its result, or its typed failure's name."""
    waiting: deque[tuple[int, Any]] = deque()
    sent = 0
    while sent < len(texts) or waiting:
        while sent < len(texts) and len(waiting) < in_flight:
            waiting.append((sent, fleet.submit(texts[sent], profile)))
            sent += 1
        i, handle = waiting.popleft()
        try:
            yield i, handle.get(timeout=180)
        except ToolfleetError as exc:
            yield i, type(exc).__name__


def crash_redis(server: EmbeddedRedis, down: float = 1.0) -> None:
    """SIGKILL ``server`` (a crash, not a clean stop), then start it again on its port
    and its data directory ``down`` seconds later. From the calling thread: the server
    is told to die with the thread that started it (PR_SET_PDEATHSIG)."""
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait()
    server.proc = None
    time.sleep(down)
    server.start(timeout=30)
