"""The threads a bulk run's multi-step items run in: kept from item to item, one more
only when all are busy, and each closing its result backend once when the run ends."""

from __future__ import annotations

import threading

from toolfleet.client.stepped import StepThreads

from ..helpers import eventually


def test_an_idle_thread_takes_the_next_job_and_each_is_released_at_close() -> None:
    released: list[str] = []
    pool = StepThreads(release=lambda: released.append(threading.current_thread().name))
    names: list[str] = []
    for _ in range(3):  # one after another: the same thread each time
        done = threading.Event()

        def job(done: threading.Event = done) -> None:
            names.append(threading.current_thread().name)
            done.set()

        pool.run(job)
        assert done.wait(10)
        eventually(lambda: pool.idle == 1, 10, "the thread idle again")
    assert len(set(names)) == 1
    gate = threading.Event()
    running: list[str] = []

    def hold() -> None:
        running.append(threading.current_thread().name)
        gate.wait(10)

    pool.run(hold)
    pool.run(hold)  # the first thread is busy: a second one
    eventually(lambda: len(running) == 2, 10, "both jobs running")
    assert len(set(running)) == 2 and names[0] in running
    assert released == []  # nothing closed while the run goes on
    gate.set()
    pool.close()
    eventually(lambda: len(released) == 2, 10, "each thread's backend closed")
    assert sorted(released) == sorted(running)
