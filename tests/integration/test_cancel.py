"""Cancel and control while busy, on real workers and real tools: a queued prompt never
reaches its tool (also after a worker restart), a running one is interrupted (or its
tool restarted when it ignores the interrupt), and restart does not wait for a prompt."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolfleet import PromptCancelled, SessionLost, ToolCrashed
from toolfleet.client.items import MapItem, MapOutcome
from toolfleet.models import InstanceHealth

from ..helpers import eventually
from .procs import Workers, env_for, fleet_thread


def running(workers: Workers, prompt_id: str) -> InstanceHealth:
    """Wait until some worker's record says it runs ``prompt_id``; that record."""
    return eventually(
        lambda: next((h for h in workers.fleet.status() if h.prompt_id == prompt_id), None),
        30,
        f"{prompt_id} running",
    )


def cancelled_within(handle: object, seconds: float) -> str:
    """``handle.get`` raises PromptCancelled within ``seconds``; its message."""
    started = time.monotonic()
    with pytest.raises(PromptCancelled) as caught:
        handle.get(timeout=seconds + 30)  # type: ignore[attr-defined]
    assert time.monotonic() - started < seconds, caught.value
    return caught.value.message


@pytest.mark.parametrize(
    ("profile", "text", "after"),
    [
        ("python", "import time\nx = 41\ntime.sleep(60)", "x + 1"),
        ("bash", "x=41; sleep 60", "echo $((x + 1))"),
    ],
)
def test_a_running_prompt_is_interrupted_and_the_instance_serves_the_next(
    workers: Workers, profile: str, text: str, after: str
) -> None:
    (name,) = workers.start(profile)
    workers.wait_ready([name])
    with workers.fleet.session(profile) as session:
        handle = session.send(text)
        record = running(workers, handle.id)
        asked = time.monotonic()
        assert handle.cancel() == f"interrupted on {record.worker}"
        message = cancelled_within(handle, 10)
        assert "the tool was interrupted" in message
        latency = time.monotonic() - asked
        # the same instance, its state kept: the interrupt stopped only the prompt
        answer = session.send(after).get(timeout=30)
        assert answer.output == "42" and answer.pid == record.pid, answer
    print(f"cancel latency {latency:.2f} s")


def test_a_tool_that_ignores_the_interrupt_is_restarted(workers: Workers) -> None:
    (name,) = workers.start("bash")
    workers.wait_ready([name])
    handle = workers.fleet.submit("trap '' INT; echo ignoring; sleep 60", "bash")
    record = running(workers, handle.id)
    # the shell ignores SIGINT once it has run the trap (an earlier Ctrl-C only drops the
    # line being read): wait until its output says so
    assert next(iter(handle.stream(timeout=30))) == "ignoring"
    assert handle.cancel().startswith("interrupted on ")
    message = cancelled_within(handle, 2 + 10)  # grace, restart
    assert "restarted (it ignored the interrupt)" in message
    answer = workers.fleet.submit("echo back", "bash").get(timeout=30)
    assert answer.output == "back" and answer.generation == record.generation + 1


def test_a_queued_prompt_never_reaches_the_tool(workers: Workers, tmp_path: Path) -> None:
    log = tmp_path / "echo.log"
    (name,) = workers.start("echo", ECHO_TOOL_LOG=str(log))
    workers.wait_ready([name])
    first = workers.fleet.submit(":sleep 2 first", "echo")
    running(workers, first.id)
    queued = workers.fleet.submit("second", "echo")
    assert workers.fleet.cancel(queued.id) == {queued.id: "revoked"}
    cancelled_within(queued, 5)
    assert first.get(timeout=30).output == "slept 2 first"
    assert workers.fleet.submit("third", "echo").get(timeout=30).output == "third"
    assert log.read_text().split("\n")[:2] == [":sleep 2 first", "third"]


def test_a_prompt_cancelled_while_no_worker_runs_is_dropped_by_the_next(
    workers: Workers, tmp_path: Path
) -> None:
    log = tmp_path / "echo.log"
    handle = workers.fleet.submit("never", "echo")  # queued: no worker yet
    assert workers.fleet.cancel(handle.id) == {handle.id: "revoked"}
    cancelled_within(handle, 5)
    (name,) = workers.start("echo", ECHO_TOOL_LOG=str(log))
    workers.wait_ready([name])
    assert workers.fleet.submit("after", "echo").get(timeout=30).output == "after"
    assert log.read_text().split() == ["after"]  # "never" was dropped, never typed


def test_restart_does_not_wait_for_the_running_prompt(workers: Workers) -> None:
    (name,) = workers.start("python")
    workers.wait_ready([name])
    handle = workers.fleet.submit("import time; time.sleep(60)", "python")
    record = running(workers, handle.id)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "toolfleet", "restart", record.worker],
        env=env_for(workers.settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert done.returncode == 0 and record.worker in done.stdout, done.stderr
    with pytest.raises(ToolCrashed, match="restarted while answering"):
        handle.get(timeout=30)
    assert took < 10, took  # the prompt had 60 s to go
    answer = workers.fleet.submit("1 + 1", "python").get(timeout=30)
    assert answer.output == "2" and answer.generation > record.generation


def test_a_cancelled_item_fails_its_map_with_prompt_cancelled_and_is_not_retried(
    workers: Workers, tmp_path: Path
) -> None:
    (name,) = workers.start("bash")
    workers.wait_ready([name])
    items = [MapItem("slow", "sleep 60; echo slow"), MapItem("fast", "echo fast")]
    outcomes: list[MapOutcome] = []
    run = fleet_thread(
        workers.fleet,
        lambda: outcomes.extend(workers.fleet.map(items, "bash", in_flight=1, retries=2)),
    )
    run.start()
    busy = eventually(
        lambda: next((h for h in workers.fleet.status() if h.prompt_id), None), 30, "busy"
    )
    assert busy.prompt_id is not None
    workers.fleet.cancel(busy.prompt_id)
    run.join(60)
    assert not run.is_alive()
    by_key = {o.key: o for o in outcomes}
    slow = by_key["slow"]
    assert slow.error_type == "PromptCancelled" and slow.attempts == 1, slow
    assert by_key["fast"].ok


def test_session_cancel_stops_its_running_and_queued_prompts(workers: Workers) -> None:
    (name,) = workers.start("bash")
    workers.wait_ready([name])
    with workers.fleet.session("bash") as session:
        running_one = session.send("sleep 60")
        queued_one = session.send("echo never")
        record = running(workers, running_one.id)
        outcome = session.cancel()
        assert outcome == {
            running_one.id: f"interrupted on {record.worker}",
            queued_one.id: "revoked",
        }
        message = cancelled_within(running_one, 15)
        cancelled_within(queued_one, 10)
        if "the tool was interrupted" in message:  # the same instance, the session goes on
            assert session.send("echo after").get(timeout=30).output == "after"
        else:  # too slow to come back (a loaded machine): restarted, and the session says so
            assert "restarted (it ignored the interrupt)" in message, message
            with pytest.raises(SessionLost, match="did not come back to its prompt"):
                session.send("echo after").get(timeout=30)
