"""Claude Code through its stream-json protocol: the real CLI (npm, in .agents), its model
``tests/programs/fake_anthropic.py``; one process, many prompts, the end of an answer its
``result`` event.

Claude Code runs from ``.agents/node_modules/.bin`` (``scripts/agents-install``; the tests
are skipped without it), with a private HOME per instance and only the fake server to
talk to (its non-essential traffic, telemetry and updates switched off by the profile).
"""

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
from ..programs import fake_anthropic
from .conftest import _fresh_settings
from .procs import Workers, env_for

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ROOT / ".agents" / "node_modules" / ".bin"
CLAUDE = AGENTS / "claude"

pytestmark = pytest.mark.skipif(
    not CLAUDE.is_file(), reason="Claude Code is not installed: run scripts/agents-install"
)


@pytest.fixture
def server() -> Iterator[fake_anthropic.FakeAnthropic]:
    srv, thread = fake_anthropic.serve(0)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def make_repo(root: Path, count: int) -> list[str]:
    root.mkdir()
    git(root, "init", "--quiet", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "dev")
    (root / "src").mkdir()
    names = [f"src/m{i}.py" for i in range(count)]
    for i, name in enumerate(names):
        (root / name).write_text(f"VALUE = {i}\n", encoding="utf-8")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "start")
    return names


def claude_profile(port: int) -> Profile:
    """The built-in claude profile on the installed CLI, talking to the fake server."""
    base = BUILTIN_PROFILES["claude"]
    env = {**base.env, **fake_anthropic.claude_env(port)}
    return base.model_copy(update={"argv": [str(CLAUDE), *base.argv[1:]], "env": env})


def test_one_process_answers_many_prompts_and_remembers_them(
    server: fake_anthropic.FakeAnthropic, tmp_path: Path
) -> None:
    agent = make_instance(claude_profile(server.port), cwd=str(tmp_path))
    agent.start()
    try:
        first = agent.ask("hello")
        pid = agent.pid
        second = agent.ask("and again")
        assert first.output == "Reply #1: I have seen 1 user messages."
        assert second.output.endswith("I have seen 2 user messages.")  # the history kept
        assert agent.pid == pid and first.ok and second.ok
        assert first.usage is not None and first.usage.sent > 0 and first.usage.received > 0
        assert first.usage.cost > 0 and second.usage is not None
        with pytest.raises(PromptRejected):
            agent.ask("a\x00b")
        with pytest.raises(PromptRejected):
            agent.ask("x" * (BUILTIN_PROFILES["claude"].max_prompt_bytes + 1))
        assert agent.ask("still here").output.endswith("3 user messages.")
        assert agent.reset()  # /clear: a new conversation, the same process
        assert agent.ask("fresh").output.endswith("I have seen 1 user messages.")
        assert agent.pid == pid
    finally:
        agent.close()
        shutil.rmtree(agent.instance_dir, ignore_errors=True)  # type: ignore[attr-defined]


def test_a_running_prompt_is_cancelled_through_the_protocol(
    server: fake_anthropic.FakeAnthropic, tmp_path: Path
) -> None:
    agent = make_instance(claude_profile(server.port), cwd=str(tmp_path))
    agent.start()
    try:
        pid = agent.pid
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                agent.ask("a slow one please")
            except BaseException as exc:
                outcome.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        eventually(lambda: agent.partial() is not None, 10, "the prompt running")
        eventually(lambda: any("slow" in r["request"] for r in server.requests), 10, "sent")
        assert agent.abort("cancel", "cancelled by the test")
        runner.join(15)
        assert len(outcome) == 1 and isinstance(outcome[0], PromptCancelled), outcome
        assert "the agent was interrupted" in str(outcome[0])
        assert agent.pid == pid  # the same process answers the next prompt
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
        f'[profiles.claude-wt]\nextends = "claude"\nworkspace = "worktree"\nrepo = "{repo}"\n',
        encoding="utf-8",
    )
    return _fresh_settings(redis_server, profiles=profiles)


def worker_env(server: fake_anthropic.FakeAnthropic) -> dict[str, str]:
    return {
        **fake_anthropic.claude_env(server.port),
        "PATH": f"{AGENTS}{os.pathsep}{os.environ['PATH']}",
    }


def test_a_rollout_through_claude_workers_edits_worktrees_and_is_applied(
    workers: Workers, server: fake_anthropic.FakeAnthropic, repo: Path
) -> None:
    names = make_repo(repo, 4)
    workers.wait_ready(workers.start("claude-wt", 2, **worker_env(server)), timeout=120)
    step = 'Add a "# DOC_ID: {stem}" header line to {path}'
    argv = [sys.executable, "-m", "toolfleet", "map", "-p", "claude-wt", "--apply", "--json"]
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
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    records = {r["key"]: r for r in map(json.loads, done.stdout.splitlines())}
    for name in names:  # each item's change: its own file, from its instance's worktree
        assert records[name]["changes"]["files"] == [name], records[name]
        assert records[name]["output"] == f"Added the DOC_ID header to {name}."


def test_an_edit_is_the_agents_own_tool_calls_recorded_with_its_answer(
    server: fake_anthropic.FakeAnthropic, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("A = 1\n")
    agent = make_instance(claude_profile(server.port), cwd=str(tmp_path))
    agent.start()
    try:
        answer = agent.ask('Add a "# DOC_ID: a" header line to src/a.py')
    finally:
        agent.close()
        shutil.rmtree(agent.instance_dir, ignore_errors=True)  # type: ignore[attr-defined]
    assert (tmp_path / "src" / "a.py").read_text() == "# DOC_ID: a\nA = 1\n"
    assert answer.output == "Added the DOC_ID header to src/a.py."
    assert [c["name"] for c in answer.tool_calls] == ["Read", "Write"]
    assert all(c.get("result") and not c.get("error") for c in answer.tool_calls)
    assert answer.tool_calls[1]["input"]["file_path"] == str(tmp_path / "src" / "a.py")


def test_a_killed_agent_is_restarted_and_its_session_is_lost(
    workers: Workers, server: fake_anthropic.FakeAnthropic, repo: Path
) -> None:
    make_repo(repo, 1)
    (name,) = workers.start("claude-wt", 1, **worker_env(server))
    workers.wait_ready([name], timeout=120)
    with workers.fleet.session("claude-wt") as session:
        first = session.send("hello").get(timeout=60)
        assert first.tool_calls == [] and first.usage is not None
        os.kill(first.pid, signal.SIGKILL)
        eventually(
            lambda: any(
                h.generation > first.generation and h.state == "ready"
                for h in workers.fleet.status("claude-wt")
            ),
            60,
            "the agent restarted",
        )
        with pytest.raises(SessionLost):
            session.send("again").get(timeout=60)
