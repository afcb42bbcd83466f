"""A process told to stop exits within a deadline, whatever its shutdown waits on (a
Redis that went away first, as in a compose ``down``)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

__all__ = ["EXIT_WITHIN", "exit_now", "exit_within"]

log = logging.getLogger(__name__)

#: seconds Flower and the exporter have to stop on their own after SIGTERM
EXIT_WITHIN = 3.0


def exit_now(code: int = 0) -> None:
    """End this process at once, its output flushed, whatever its threads are doing."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def exit_within(seconds: float, what: str) -> None:
    """End this process ``seconds`` from now unless it has ended by then."""

    def run() -> None:
        time.sleep(seconds)
        log.warning("%s still stopping %g s after the signal: exiting now", what, seconds)
        exit_now()

    threading.Thread(target=run, name="toolfleet-exit", daemon=True).start()
