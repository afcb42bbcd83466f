"""Gemini CLI through the Agent Client Protocol (``gemini --acp``): the real CLI (npm, in
.agents), its model ``tests/programs/fake_gemini.py``; one process, many prompts, the end
of an answer the response to ``session/prompt``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolfleet import PromptCancelled, PromptRejected, SessionLost, Settings
from toolfleet.cli.local import EmbeddedRedis
from toolfleet.profiles import BUILTIN_PROFILES, Profile
from toolfleet.tool.factory import make_instance

from ..helpers import eventually
from ..programs import fake_gemini
from .conftest import _fresh_settings
from .procs import Workers, env_for
from .test_claude import AGENTS, git, make_repo

GEMINI = AGENTS / "gemini"

pytestmark = pytest.mark.skipif(
    not GEMINI.is_file(), reason="Gemini CLI is not installed: run scripts/agents-install"
)


@pytest.fixture
def server() -> Iterator[fake_gemini.FakeGemini]:
    srv, thread = fake_gemini.serve(0)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def gemini_profile(port: int) -> Profile:
    base = BUILTIN_PROFILES["gemini"]
    env = {**base.env, **fake_gemini.gemini_env(port)}
    return base.model_copy(update={"argv": [str(GEMINI), *base.argv[1:]], "env": env})


def test_one_process_answers_many_prompts_edits_files_and_refuses_bad_input(
    server: fake_gemini.FakeGemini, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("A = 1\n")
    agent = make_instance(gemini_profile(server.port), cwd=str(tmp_path))
    agent.start()
    try:
        pid = agent.pid
        first = agent.ask("hello")
        second = agent.ask("and again")
        edit = agent.ask('Add a "# DOC_ID: a" header line to src/a.py')
        with pytest.raises(PromptRejected):
            agent.ask("a\x00b")
        with pytest.raises(PromptRejected):
            agent.ask("x" * (BUILTIN_PROFILES["gemini"].max_prompt_bytes + 1))
        assert agent.pid == pid
        assert agent.reset()  # a new conversation, the same process
        fresh = agent.ask("fresh")
        assert agent.pid == pid
    finally:
        agent.close()
        shutil.rmtree(agent.instance_dir, ignore_errors=True)  # type: ignore[attr-defined]
    assert first.output == "Reply #1: I have seen 1 user messages."
    assert second.output.endswith("I have seen 2 user messages.")  # the history kept
    assert fresh.output.endswith("I have seen 1 user messages."), fresh.output
    assert first.usage is not None and first.usage.sent > 0 and first.usage.received > 0
    assert (tmp_path / "src" / "a.py").read_text() == "# DOC_ID: a\nA = 1\n"
    assert edit.output == "Added the DOC_ID header to a.py." and edit.ok
    assert len(edit.tool_calls) == 1 and edit.tool_calls[0]["error"] is False


def test_a_running_prompt_is_cancelled_with_session_cancel(
    server: fake_gemini.FakeGemini, tmp_path: Path
) -> None:
    agent = make_instance(gemini_profile(server.port), cwd=str(tmp_path))
    agent.start()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            agent.ask("a slow one please")
        except BaseException as exc:
            outcome.append(exc)

    try:
        pid = agent.pid
        runner = threading.Thread(target=run)
        runner.start()
        eventually(lambda: any("slow" in r["request"] for r in server.requests), 20, "sent")
        assert agent.abort("cancel", "cancelled by the test")
        runner.join(20)
        assert len(outcome) == 1 and isinstance(outcome[0], PromptCancelled), outcome
        assert "the agent was interrupted" in str(outcome[0])
        assert agent.pid == pid
        assert agent.ask("next").output.startswith("Reply #")
    finally:
        agent.close()
        shutil.rmtree(agent.instance_dir, ignore_errors=True)  # type: ignore[attr-defined]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path, repo: Path) -> Settings:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        f'[profiles.gemini-wt]\nextends = "gemini"\nworkspace = "worktree"\nrepo = "{repo}"\n',
        encoding="utf-8",
    )
    return _fresh_settings(redis_server, profiles=profiles)


def test_a_rollout_through_gemini_workers_edits_worktrees_and_is_applied(
    workers: Workers, server: fake_gemini.FakeGemini, repo: Path
) -> None:
    names = make_repo(repo, 4)
    env = {
        **fake_gemini.gemini_env(server.port),
        "PATH": f"{AGENTS}{os.pathsep}{os.environ['PATH']}",
    }
    workers.wait_ready(workers.start("gemini-wt", 2, **env), timeout=180)
    step = 'Add a "# DOC_ID: {stem}" header line to {path}'
    argv = [sys.executable, "-m", "toolfleet", "map", "-p", "gemini-wt", "--apply", "--json"]
    done = subprocess.run(
        [*argv, "-s", step, *names],
        cwd=repo,
        env=env_for(workers.settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "4 change(s) applied, 0 conflict(s)" in done.stderr
    for name in names:
        assert (repo / name).read_text().splitlines()[0] == f"# DOC_ID: {Path(name).stem}"
    records = {r["key"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert all(records[n]["changes"]["files"] == [n] for n in names), records
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_a_killed_agent_is_restarted_and_its_session_is_lost(
    workers: Workers, server: fake_gemini.FakeGemini, repo: Path
) -> None:
    make_repo(repo, 1)
    env = {
        **fake_gemini.gemini_env(server.port),
        "PATH": f"{AGENTS}{os.pathsep}{os.environ['PATH']}",
    }
    (name,) = workers.start("gemini-wt", 1, **env)
    workers.wait_ready([name], timeout=180)
    with workers.fleet.session("gemini-wt") as session:
        first = session.send("hello").get(timeout=60)
        assert first.output.startswith("Reply #") and first.usage is not None
        os.kill(first.pid, signal.SIGKILL)
        eventually(
            lambda: any(
                h.generation > first.generation and h.state == "ready"
                for h in workers.fleet.status("gemini-wt")
            ),
            90,
            "the agent restarted",
        )
        with pytest.raises(SessionLost):
            session.send("again").get(timeout=60)
