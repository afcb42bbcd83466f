"""State persists inside one instance."""

from __future__ import annotations

from .procs import Workers


def test_state_persists_on_a_single_worker_fleet(workers: Workers) -> None:
    workers.wait_ready(workers.start("python"))
    fleet = workers.fleet
    assert fleet.submit("x = 41", "python").get(timeout=30).output == ""
    assert fleet.submit("x + 1", "python").get(timeout=30).output == "42"
    # the same process answers (its own pid, as it sees it: a confined tool has its
    # own PID namespace), and the health record keeps naming the same process
    first = fleet.submit("import os; os.getpid()", "python").get(timeout=30)
    again = fleet.submit("os.getpid()", "python").get(timeout=30)
    assert first.output == again.output and first.output.isdigit()
    assert first.pid == again.pid and first.generation == again.generation
