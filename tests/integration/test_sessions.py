"""Sessions on a real fleet: pinned, exclusive, ordered, expiring, lost on restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from toolfleet import NoWorkers, SessionLost
from toolfleet.client.sessions import Session

from ..helpers import eventually
from .procs import Workers, env_for


@pytest.fixture(scope="module")
def fleet(module_workers: Workers) -> Workers:
    module_workers.wait_ready(module_workers.start("python", 3))
    return module_workers


def live_states(fleet: Workers) -> dict[str, tuple[str, str | None]]:
    """(state, session) as each worker tells it now, from the thread that also answers
    ``tool_lease`` and ``tool_release``: no heartbeat lag."""
    replies = fleet.fleet.app.control.broadcast("tool_health", reply=True, timeout=5, limit=3)
    return {node: (h["state"], h["session"]) for reply in replies for node, h in reply.items()}


def all_free(fleet: Workers) -> bool:
    """Each of the 3 instances is ready and unleased, by its worker's word and its record.

    The records alone are not enough: a session shorter than the heartbeat's debounce
    (50 ms) never shows in them, so the record read right after its close can still be
    the one from before the lease while the worker is resetting the instance. The
    records must agree too, since placement reads them.
    """
    live = live_states(fleet)
    if len(live) != 3 or any(v != ("ready", None) for v in live.values()):
        return False
    records = fleet.fleet.status("python")
    return len(records) == 3 and all(r.state == "ready" and not r.session for r in records)


def wait_all_free(fleet: Workers, timeout: float = 10.0) -> None:
    eventually(
        lambda: all_free(fleet),
        timeout,
        lambda: f"all free: {live_states(fleet)}; {fleet.fleet.status('python')}",
    )


@pytest.fixture(autouse=True)
def free(fleet: Workers) -> None:
    wait_all_free(fleet)


def test_state_is_kept_within_a_session(fleet: Workers) -> None:
    with fleet.fleet.session("python", strategy="least-busy") as s:
        s.send("x = 41").get(timeout=30)
        result = s.send("x + 1").get(timeout=30)
    assert result.output == "42"
    assert result.worker == s.worker and result.session == s.id and result.seq == 1


def test_concurrent_sessions_never_see_each_others_state(fleet: Workers) -> None:
    with fleet.fleet.session("python") as a, fleet.fleet.session("python") as b:
        assert a.worker != b.worker
        a.send("secret = 'a'").get(timeout=30)
        b.send("secret = 'b'").get(timeout=30)
        assert a.send("secret").get(timeout=30).output == "'a'"
        assert b.send("secret").get(timeout=30).output == "'b'"


def test_shared_prompts_avoid_leased_instances_and_status_shows_the_lease(fleet: Workers) -> None:
    with fleet.fleet.session("python") as a, fleet.fleet.session("python") as b:
        records = {r.worker: r for r in fleet.fleet.status("python", fresher_than=time.time())}
        assert records[a.worker].session == a.id and records[b.worker].session == b.id
        handles = [fleet.fleet.submit(f"{i} + 1", "python") for i in range(30)]
        a_out = [a.send(f"{i} * 10") for i in range(5)]
        results = [h.get(timeout=60) for h in handles]
        free = {results[0].worker}
        assert free.isdisjoint({a.worker, b.worker})
        assert {r.worker for r in results} == free
        assert [r.output for r in results] == [str(i + 1) for i in range(30)]
        assert [h.get(timeout=30).output for h in a_out] == [str(i * 10) for i in range(5)]


def test_all_leased_means_no_workers_after_the_wait(fleet: Workers) -> None:
    sessions = [fleet.fleet.session("python") for _ in range(3)]
    try:
        started = time.monotonic()
        with pytest.raises(NoWorkers, match="no free instance"):
            fleet.fleet.session("python", wait=1.0)
        assert time.monotonic() - started < 10
    finally:
        for s in sessions:
            s.close()


def test_a_waiting_session_opens_on_the_workers_word_not_at_its_next_look(
    fleet: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    import toolfleet.client.sessions as sessions

    sessions_held = [fleet.fleet.session("python") for _ in range(3)]
    # looks 90 s apart: only the word of a worker whose instance became free opens the
    # waiting session before its second look
    monkeypatch.setattr(sessions, "FIRST_PAUSE", 90.0)
    monkeypatch.setattr(sessions, "MAX_PAUSE", 90.0)
    opened: list[object] = []
    waiter = threading.Thread(
        target=lambda: opened.append(fleet.fleet.session("python", wait=120.0)), daemon=True
    )
    try:
        waiter.start()
        time.sleep(0.5)
        assert not opened
        released = sessions_held.pop(0)
        released.close()
        waiter.join(60.0)
        assert opened, "the waiting session did not open within 60 s of a release"
        new = opened[0]
        assert isinstance(new, Session) and new.worker == released.worker
        assert new.send("1 + 1").get(timeout=30).output == "2"
        new.close()
    finally:
        for s in sessions_held:
            s.close()


def test_100_prompts_sent_without_waiting_run_in_order(fleet: Workers) -> None:
    with fleet.fleet.session("python") as s:
        s.send("seen = []").get(timeout=30)
        handles = [s.send(f"seen.append({i})") for i in range(100)]
        last = s.send("seen").get(timeout=60)
    assert last.output == repr(list(range(100)))
    assert [h.get(timeout=30).seq for h in handles] == list(range(1, 101))


def test_round_robin_spreads_sessions_evenly(fleet: Workers) -> None:
    used = []
    for _ in range(6):
        with fleet.fleet.session("python", strategy="round-robin") as s:
            s.send("1").get(timeout=30)
            used.append(s.worker)
        wait_all_free(fleet)
    assert sorted(Counter(used).values()) == [2, 2, 2], used
    names = sorted(set(used))  # and in turn: each session on the next worker by name
    first = names.index(used[0])
    assert used == [names[(first + i) % 3] for i in range(6)], used


def test_session_lost_after_the_tool_is_killed(fleet: Workers) -> None:
    with fleet.fleet.session("python") as s:
        first = s.send("x = 1").get(timeout=30)
        os.kill(first.pid, signal.SIGKILL)
        eventually(
            lambda: (
                (r := next(r for r in fleet.fleet.status("python") if r.worker == s.worker))
                and r.generation > first.generation
                and r.state == "ready"
            ),
            10,
            "the killed tool restarted",
        )
        with pytest.raises(SessionLost, match="restarted under session"):
            s.send("x").get(timeout=30)


def test_abandoned_lease_expires_and_the_instance_is_reset(fleet: Workers) -> None:
    code = (
        "import sys, time\n"
        "from toolfleet import Fleet\n"
        "s = Fleet.from_env().session('python', ttl=1.5)\n"
        "r = s.send('leftover = 99').get(timeout=30)\n"
        "print(s.worker, r.generation, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        env=env_for(fleet.settings),
        stdout=subprocess.PIPE,
        text=True,
    ) as producer:  # leaving closes its pipe and waits for it
        try:
            worker, generation = producer.stdout.readline().split()  # type: ignore[union-attr]
        finally:
            producer.kill()
    wait_all_free(fleet, timeout=15)  # lease expired, instance reset, back in the pool
    result = fleet.fleet.submit("'leftover' in globals()", "python", worker=worker).get(30)
    assert result.output == "False"
    assert result.generation > int(generation)


def test_cli_session_open_submit_status_close(fleet: Workers) -> None:
    env = env_for(fleet.settings, COLUMNS="250")
    tf = [sys.executable, "-m", "toolfleet"]

    def run(*args: str) -> str:
        out = subprocess.run([*tf, *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    sid = run("session", "open", "--profile", "python")
    assert run("submit", "--session", sid, "y = 5") == ""
    assert run("submit", "--session", sid, "y * 2") == "10"
    # the lease reaches the worker's record (the next heartbeat), then the table shows it
    eventually(lambda: sid in {r.session for r in fleet.fleet.status("python")}, 10, sid)
    assert sid in run("status")
    assert run("session", "close", sid) == f"closed {sid}"
    gone = subprocess.run(
        [*tf, "submit", "--session", sid, "y"], env=env, capture_output=True, text=True, timeout=60
    )
    assert gone.returncode == 1 and "SessionLost" in gone.stderr


def test_sequence_numbers_come_from_one_counter_whichever_process_sends(fleet: Workers) -> None:
    with fleet.fleet.session("python") as s:
        assert s.send("1").get(timeout=30).seq == 0
        other = fleet.fleet.attach(s.id)  # what `toolfleet submit --session` does
        assert other.send("2").get(timeout=30).seq == 1
        assert s.send("3").get(timeout=30).seq == 2
