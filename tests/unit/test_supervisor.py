"""Supervision with a scripted fake instance: results, crashes, crash loops, recycling."""

from __future__ import annotations

import pytest

from toolfleet.errors import SessionLost, ToolCrashed
from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool.fake import FakeInstance
from toolfleet.workers.supervisor import Supervisor

from ..helpers import eventually


def make(respond=str.upper, **profile_fields):
    profile = BUILTIN_PROFILES["echo"].model_copy(update=profile_fields)
    inst = FakeInstance(profile, respond)
    sup = Supervisor(inst, "w@h", ["toolfleet.echo"])
    states: list[str] = []
    sup.subscribe(lambda old, new: states.append(new))
    return sup, inst, states


def test_run_returns_a_full_result_and_reports_busy_then_ready():
    sup, inst, states = make()
    sup.start()
    try:
        assert sup.begin_session("s") == 1
        res = sup.run("hi", prompt_id="p1", session="s", seq=3)
    finally:
        sup.stop()
    assert (res.output, res.worker, res.profile, res.generation) == ("HI", "w@h", "echo", 1)
    assert (res.prompt_id, res.session, res.seq, res.pid) == ("p1", "s", 3, inst.pid or res.pid)
    assert states[:3] == ["ready", "busy", "ready"]
    assert states[-1] == "stopping"


def test_crash_during_prompt_raises_and_the_next_prompt_gets_a_new_generation():
    def respond(text):
        if text == "die":
            inst.crash()
            raise ToolCrashed("gone")
        return text

    sup, inst, _ = make(respond, restart_backoff=0)
    sup.start()
    try:
        with pytest.raises(ToolCrashed):
            sup.run("die")
        res = sup.run("ok")
    finally:
        sup.stop()
    assert res.generation == 2
    assert sup.restarts >= 1


def test_idle_death_is_restarted_by_the_watcher():
    sup, inst, _ = make(restart_backoff=0)
    sup.start()
    try:
        inst.crash()
        eventually(lambda: inst.generation >= 2 and sup.state == "ready", 3, "a restart")
        assert inst.generation == 2
    finally:
        sup.stop()


class NeverStarts(FakeInstance):
    def start(self):
        raise ToolCrashed("exited (exit status 1) while starting")


def test_crash_loop_ends_in_failed_with_the_reason():
    profile = BUILTIN_PROFILES["echo"].model_copy(
        update={"restart_backoff": 0.01, "crash_loop_restarts": 3}
    )
    sup = Supervisor(NeverStarts(profile), "w@h", [])
    sup.start(wait=True)
    try:
        assert sup.state == "failed"
        assert "crash loop: 3 failed starts" in (sup.health().last_error or "")
        with pytest.raises(ToolCrashed, match="has failed"):
            sup.run("x")
    finally:
        sup.stop()


def test_recycle_after_max_prompts():
    sup, _inst, _ = make(max_prompts=2)
    sup.start()
    try:
        gens = [sup.run(str(i)).generation for i in range(5)]
    finally:
        sup.stop()
    assert gens == [1, 1, 2, 2, 3]


def test_a_session_runs_only_on_its_generation_and_blocks_shared_work():
    sup, inst, _ = make(restart_backoff=0)
    sup.start()
    try:
        assert sup.takes_shared_work
        sup.begin_session("s")
        assert not sup.takes_shared_work
        assert sup.run("a", session="s").output == "A"
        with pytest.raises(SessionLost, match="no longer holds"):
            sup.run("a", session="other")
        inst.crash()
        with pytest.raises(SessionLost, match="restarted under session s"):
            sup.run("a", session="s")
        sup.end_session()
        assert sup.public_state == "restarting" or sup.state == "restarting"
        assert not sup.takes_shared_work  # until the watcher has reset the instance
        eventually(lambda: sup.takes_shared_work, 3, "the reset")
        assert sup.takes_shared_work and sup.public_state == "ready"
    finally:
        sup.stop()


class FlakyLiveness(FakeInstance):
    """alive() fails once, as an unexpected error from the tool layer would."""

    failures = 1

    def alive(self):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("liveness check failed")
        return super().alive()


def test_the_watcher_outlives_errors_and_still_restarts_a_dead_tool():
    profile = BUILTIN_PROFILES["echo"].model_copy(update={"restart_backoff": 0})
    inst = FlakyLiveness(profile, str.upper)
    sup = Supervisor(inst, "w@h", ["toolfleet.echo"])
    sup.periodic.append(lambda: 1 / 0)
    sup.start()
    try:
        eventually(lambda: inst.failures == 0, 3, "the failing liveness check")
        inst.crash()
        eventually(lambda: inst.generation >= 2 and sup.state == "ready", 3, "a restart")
        assert inst.generation == 2
    finally:
        sup.stop()
