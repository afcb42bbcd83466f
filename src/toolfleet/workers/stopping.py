"""A stopping worker that Redis holds up (frozen, unreachable) exits anyway, in seconds.

Celery's warm shutdown (SIGTERM) waits for the worker's loop, and the loop can be
blocked in a Redis command that never returns: a frozen Redis (a stalled host, a cut
link) answers nothing and kombu's sockets have no timeout. A compose ``down`` then waits
its whole grace period. :class:`StopWatch` starts when the shutdown does; if the worker
is still there :data:`STOP_WITHIN` seconds later, runs no prompt, and Redis does not
answer a PING within a second, it closes the tool and ends the process. Nothing is lost:
a prompt the worker held is still in Redis' unacknowledged set and is delivered again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from toolfleet.exiting import exit_now
from toolfleet.workers import state

__all__ = ["ANSWER_WITHIN", "STOP_WITHIN", "StopWatch", "answers_within"]

log = logging.getLogger(__name__)

#: seconds a stopping worker is left to stop on its own
STOP_WITHIN = 2.0
#: seconds Redis has to answer a PING before it counts as not answering
ANSWER_WITHIN = 1.0


def answers_within(ping: Callable[[], object], seconds: float = ANSWER_WITHIN) -> bool:
    """Whether ``ping()`` returns without an error within ``seconds`` (it runs in a thread
    of its own, left behind if it hangs)."""
    done = threading.Event()
    ok: list[bool] = []

    def run() -> None:
        try:
            ping()
            ok.append(True)
        except Exception:
            ok.append(False)
        done.set()

    threading.Thread(target=run, name="toolfleet-ping", daemon=True).start()
    return done.wait(seconds) and ok == [True]


class StopWatch:
    """Ends a stopping worker that Redis holds up; see the module's docstring."""

    def __init__(
        self,
        redis_answers: Callable[[], bool],
        within: float = STOP_WITHIN,
        end: Callable[[int], object] = exit_now,
    ) -> None:
        self.redis_answers = redis_answers
        self.within = within
        self.end = end
        self._thread: threading.Thread | None = None

    def start(self, **_: object) -> None:
        """Start watching (once): connected to Celery's ``worker_shutting_down``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="toolfleet-stop", daemon=True)
            self._thread.start()

    def _busy(self) -> bool:
        return state.installed() and state.current().busy_since is not None

    def _watch(self) -> None:
        time.sleep(self.within)
        # a running prompt may finish (warm shutdown); a Redis that answers lets the
        # worker's own stop go on
        while self._busy() or self.redis_answers():
            time.sleep(0.5)
        log.warning(
            "still stopping %g s after the signal and Redis does not answer: "
            "closing the tool and exiting (prompts held here are delivered again)",
            self.within,
        )
        if state.installed():
            closing = threading.Thread(
                target=lambda: state.current().instance.close(grace=0.5), daemon=True
            )
            closing.start()
            closing.join(1.0)
        self.end(0)
