"""A stopping worker held up by Redis ends itself, unless a prompt runs or Redis answers."""

from __future__ import annotations

import threading
import time

from toolfleet.workers.stopping import StopWatch, answers_within


def _watch(redis_answers) -> tuple[StopWatch, threading.Event]:
    ended = threading.Event()
    watch = StopWatch(redis_answers, within=0.05, end=lambda code: ended.set())
    watch.start(sig="TERM")
    watch.start(sig="TERM")  # a second signal starts no second watch
    return watch, ended


def test_a_stopping_worker_whose_redis_does_not_answer_is_ended() -> None:
    _, ended = _watch(lambda: False)
    assert ended.wait(5)


def test_a_stopping_worker_whose_redis_answers_is_left_to_stop_on_its_own() -> None:
    answering = threading.Event()
    answering.set()
    _, ended = _watch(answering.is_set)
    assert not ended.wait(1.0)
    answering.clear()  # then Redis freezes
    assert ended.wait(5)


def test_answers_within_tells_a_hung_or_failing_ping_from_an_answer() -> None:
    assert answers_within(lambda: "PONG", 1.0)
    assert not answers_within(lambda: time.sleep(5), 0.2)

    def refused() -> None:
        raise ConnectionError("refused")

    assert not answers_within(refused, 1.0)


def test_exit_within_ends_a_process_stuck_in_its_shutdown() -> None:
    import subprocess
    import sys

    stuck = (
        "from toolfleet.exiting import exit_within; exit_within(0.2, 'x');"
        " import time; time.sleep(60)"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", stuck], timeout=30, check=False)
    assert done.returncode == 0 and time.monotonic() - started < 20
