"""Agents through their own protocols, on the real CLIs from npm (``.agents``, made by
``scripts/agents-install``; an agent's tests are skipped without it), each against the
fake model server of its API shipped in ``tests/programs``:

- Claude Code, stream-json (``fake_anthropic.py``): the edit is its own Read and Write;
- Gemini CLI, ACP (``fake_gemini.py``): the edit is its own ``write_file``;
- Codex, app-server (``fake_responses.py``): the edit is its own ``exec_command``.

One process answers many prompts and remembers them; the end of an answer is the
protocol's own event.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from toolfleet import PromptCancelled, PromptRejected, SessionLost, Settings
from toolfleet.cli.local import EmbeddedRedis
from toolfleet.profiles import BUILTIN_PROFILES, Profile
from toolfleet.tool.factory import make_instance
from toolfleet.tool.interface import Instance

from ..gitrepo import git, make_repo
from ..helpers import eventually
from ..installed import AGENTS
from ..programs import fake_anthropic, fake_gemini, fake_responses
from ..programs.fakeserver import stop_serving
from .conftest import _fresh_settings
from .procs import Workers, confined_as, env_for

#: the worktree profiles' price_per_million (tokens sent, received)
PRICES = (2.0, 8.0)


@dataclass(frozen=True)
class Agent:
    """One agent under test: its built-in profile, its fake model, what its edit says."""

    name: str
    serve: Callable[[int], tuple[Any, threading.Thread]]
    env: Callable[[int], dict[str, str]]
    #: its answer to 'Add a "# DOC_ID: {stem}" header line to {path}' ({path}, {name})
    edited: str
    #: the names of the tool calls that make that edit
    tools: tuple[str, ...]
    #: whether the protocol reports money (Claude Code's total_cost_usd)
    priced: bool

    @property
    def binary(self) -> Path:
        return AGENTS / self.name

    def profile(self, port: int) -> Profile:
        """The built-in profile on the installed CLI, talking to the fake server."""
        base = BUILTIN_PROFILES[self.name]
        env = {**base.env, **self.env(port)}
        return base.model_copy(update={"argv": [str(self.binary), *base.argv[1:]], "env": env})


CLAUDE = Agent(
    "claude",
    fake_anthropic.serve,
    fake_anthropic.claude_env,
    "Added the DOC_ID header to {path}.",
    ("Read", "Write"),
    priced=True,
)
GEMINI = Agent(
    "gemini",
    fake_gemini.serve,
    fake_gemini.gemini_env,
    "Added the DOC_ID header to {name}.",
    ("Writing to src/a.py",),  # ACP names a call by its title
    priced=False,
)
CODEX = Agent(
    "codex",
    fake_responses.serve,
    fake_responses.codex_env,
    "Added the DOC_ID header to {path}.",
    ("commandExecution",),
    priced=False,
)


@pytest.fixture(
    params=[
        pytest.param(
            agent,
            id=agent.name,
            marks=pytest.mark.skipif(
                not agent.binary.is_file(),
                reason=f"{agent.name} is not installed: run scripts/agents-install",
            ),
        )
        for agent in (CLAUDE, GEMINI, CODEX)
    ]
)
def agent(request: pytest.FixtureRequest) -> Agent:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def server(agent: Agent) -> Iterator[Any]:
    srv, thread = agent.serve(0)
    yield srv
    stop_serving(srv, thread)


@pytest.fixture
def started(agent: Agent, server: Any, tmp_path: Path) -> Iterator[Instance]:
    """The agent's instance, started in ``tmp_path`` (which has ``src/a.py``)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("A = 1\n")
    instance = make_instance(agent.profile(server.port), cwd=str(tmp_path))
    instance.start()
    yield instance
    instance.close()
    shutil.rmtree(instance.instance_dir, ignore_errors=True)  # type: ignore[attr-defined]


def test_one_process_answers_many_prompts_remembers_them_and_resets_in_place(
    agent: Agent, started: Instance
) -> None:
    pid = started.pid
    first = started.ask("hello")
    second = started.ask("and again")
    assert first.output == "Reply #1: I have seen 1 user messages."
    assert second.output.endswith("I have seen 2 user messages.")  # the history kept
    assert started.pid == pid and first.ok and second.ok
    assert first.usage is not None and first.usage.sent > 0 and first.usage.received > 0
    assert second.usage is not None
    if agent.priced:
        assert first.usage.cost > 0
    with pytest.raises(PromptRejected):
        started.ask("a\x00b")
    with pytest.raises(PromptRejected):
        started.ask("x" * (BUILTIN_PROFILES[agent.name].max_prompt_bytes + 1))
    assert started.ask("still here").output.endswith("3 user messages.")
    assert started.reset()  # a new conversation, the same process
    assert started.ask("fresh").output.endswith("I have seen 1 user messages.")
    assert started.pid == pid


@pytest.mark.parametrize(
    "agent",
    [
        pytest.param(
            CODEX,
            id="codex",
            marks=pytest.mark.skipif(not CODEX.binary.is_file(), reason="codex is not installed"),
        )
    ],
    indirect=True,
)
def test_codex_threads_are_ephemeral_and_leave_no_session_files(started: Instance) -> None:
    # a fleet's conversation is never resumed from disk: a long-lived instance must not
    # grow its home by a rollout file a session
    assert started.ask("hello").ok
    assert started.reset()
    assert started.ask("again").output.endswith("I have seen 1 user messages.")
    home = Path(started.instance_dir) / "codex"  # type: ignore[attr-defined]
    assert (home / "config.toml").is_file()
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*.jsonl")) == []


def test_an_edit_is_the_agents_own_tool_calls_recorded_with_its_answer(
    agent: Agent, started: Instance, tmp_path: Path
) -> None:
    answer = started.ask('Add a "# DOC_ID: a" header line to src/a.py')
    assert (tmp_path / "src" / "a.py").read_text() == "# DOC_ID: a\nA = 1\n"
    assert answer.output == agent.edited.format(path="src/a.py", name="a.py") and answer.ok
    assert tuple(c["name"] for c in answer.tool_calls) == agent.tools, answer.tool_calls
    assert all(c["error"] is False for c in answer.tool_calls)
    if agent.name == "claude":  # its tool results carry text (Codex's sed prints nothing)
        assert all(c.get("result") for c in answer.tool_calls)


def test_a_running_prompt_is_cancelled_through_the_protocol(server: Any, started: Instance) -> None:
    pid = started.pid
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            started.ask("a slow one please")
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    eventually(lambda: started.partial() is not None, 10, "the prompt running")
    eventually(lambda: any("slow" in r["request"] for r in server.requests), 20, "sent")
    assert started.abort("cancel", "cancelled by the test")
    runner.join(20)
    assert len(outcome) == 1 and isinstance(outcome[0], PromptCancelled), outcome
    assert "the agent was interrupted" in str(outcome[0])
    assert started.pid == pid  # the same process answers the next prompt
    assert started.ask("next").output.startswith("Reply #")


# ---- on real workers -----------------------------------------------------------------


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path, repo: Path, agent: Agent) -> Settings:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        f'[profiles.{agent.name}-wt]\nextends = "{agent.name}"\nworkspace = "worktree"\n'
        'sandbox = "strict"\n'
        f'repo = "{repo}"\nprice_per_million = [{PRICES[0]}, {PRICES[1]}]\n',
        encoding="utf-8",
    )
    return _fresh_settings(redis_server, profiles=profiles)


def worker_env(agent: Agent, server: Any) -> dict[str, str]:
    return {**agent.env(server.port), "PATH": f"{AGENTS}{os.pathsep}{os.environ['PATH']}"}


def test_a_rollout_through_agent_workers_edits_worktrees_and_is_applied(
    agent: Agent, workers: Workers, server: Any, repo: Path
) -> None:
    names = make_repo(repo, {f"src/m{i}.py": f"VALUE = {i}\n" for i in range(4)})
    profile = f"{agent.name}-wt"
    records = workers.wait_ready(workers.start(profile, 2, **worker_env(agent, server)), 180)
    confined_as(records, "strict")
    step = 'Add a "# DOC_ID: {stem}" header line to {path}'
    argv = [sys.executable, "-m", "toolfleet", "map", "-p", profile, "--apply", "--json"]
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
        said = agent.edited.format(path=name, name=Path(name).name)
        assert records[name]["output"] == said, records[name]


def test_a_killed_agent_is_restarted_and_its_session_is_lost(
    agent: Agent, workers: Workers, server: Any, repo: Path
) -> None:
    make_repo(repo, {f"src/m{i}.py": f"VALUE = {i}\n" for i in range(1)})
    profile = f"{agent.name}-wt"
    (name,) = workers.start(profile, 1, **worker_env(agent, server))
    workers.wait_ready([name], timeout=180)
    with workers.fleet.session(profile) as session:
        first = session.send("hello").get(timeout=60)
        assert first.output.startswith("Reply #") and first.usage is not None
        assert first.tool_calls == []
        # money: the protocol's own figure (Claude Code), else the profile's token prices
        usage = first.usage
        tokens = (usage.sent * PRICES[0] + usage.received * PRICES[1]) / 1_000_000
        assert usage.cost > 0 and (agent.priced or usage.cost == pytest.approx(tokens))
        os.kill(first.pid, signal.SIGKILL)
        eventually(
            lambda: any(
                h.generation > first.generation and h.state == "ready"
                for h in workers.fleet.status(profile)
            ),
            90,
            "the agent restarted",
        )
        with pytest.raises(SessionLost):
            session.send("again").get(timeout=60)


def test_an_answer_streams_as_the_agent_writes_it(
    agent: Agent, workers: Workers, server: Any, repo: Path
) -> None:
    # each fake model streams 'count to N' a line at a time, 0.2 s apart
    make_repo(repo, {"src/m0.py": "VALUE = 0\n"})
    (name,) = workers.start(f"{agent.name}-wt", 1, **worker_env(agent, server))
    workers.wait_ready([name], timeout=180)
    handle = workers.fleet.submit("count to 8", f"{agent.name}-wt")
    chunks = [(chunk, handle.ready()) for chunk in handle.stream(timeout=60)]
    result = handle.get(timeout=30)
    expected = "\n".join(f"line {i}" for i in range(8))
    assert result.output == expected
    assert "".join(text for text, _ in chunks) == expected  # in order, nothing lost/doubled
    assert len([text for text, stored in chunks if not stored]) >= 3, chunks  # live
