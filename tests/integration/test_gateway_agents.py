"""Claude Code, Codex and Gemini CLI behind the model gateway, on a provider that
enforces its limits.

Three workers of each agent (worktree workspaces, confined) roll out a header to twelve
files; the agent's fake model server (``fake_anthropic.py``, ``fake_responses.py``,
``fake_gemini.py``) allows 8 requests per 10 s and answers 429 past it. Through the
gateway the rollout finishes with no 429 answered to anyone, the provider's limit held,
and each item's usage the provider's own count read from the wire.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis
from toolfleet.gateway.stats import upstream_stats

from ..gitrepo import git, make_repo
from ..installed import AGENTS
from ..programs import fake_anthropic, fake_gemini, fake_responses
from ..programs.fakeserver import stop_serving
from .conftest import _fresh_settings
from .procs import Workers, confined_as, env_for

AGENT_SERVERS = {"claude": fake_anthropic, "codex": fake_responses, "gemini": fake_gemini}
KINDS = {"claude": ("anthropic", ""), "codex": ("openai", "/v1"), "gemini": ("gemini", "")}
RPM, WINDOW = 8, 10


@pytest.fixture(
    params=[
        pytest.param(
            name,
            marks=pytest.mark.skipif(
                not (AGENTS / name).is_file(),
                reason=f"{name} is not installed: run scripts/agents-install",
            ),
        )
        for name in AGENT_SERVERS
    ]
)
def agent(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def server(agent: str) -> Iterator[Any]:
    srv, thread = AGENT_SERVERS[agent].serve(0)
    srv.provider.rpm, srv.provider.window = RPM, float(WINDOW)
    yield srv
    stop_serving(srv, thread)


@pytest.fixture
def settings(
    redis_server: EmbeddedRedis, tmp_path: Path, repo: Path, agent: str, server: Any
) -> Settings:
    kind, path = KINDS[agent]
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        f"""
[upstreams.fake-{agent}]
kind = "{kind}"
url = "http://127.0.0.1:{server.port}{path}"
rpm = {RPM}
window = {WINDOW}
prices = {{ "*" = [2.0, 8.0] }}

[profiles.{agent}-gw]
extends = "{agent}"
workspace = "worktree"
sandbox = "strict"
repo = "{repo}"
upstream = "fake-{agent}"
""",
        encoding="utf-8",
    )
    return _fresh_settings(redis_server, profiles=profiles)


def test_an_agent_rollout_through_the_gateway_meets_no_429(
    agent: str, workers: Workers, server: Any, repo: Path
) -> None:
    names = make_repo(repo, {f"src/m{i:02d}.py": f"VALUE = {i}\n" for i in range(12)})
    module = AGENT_SERVERS[agent]
    env = {
        **getattr(module, f"{agent}_env")(server.port),
        "PATH": f"{AGENTS}{os.pathsep}{os.environ['PATH']}",
    }
    profile = f"{agent}-gw"
    confined_as(workers.wait_ready(workers.start(profile, 3, **env), 180), "strict")
    step = 'Add a "# DOC_ID: {stem}" header line to {path}'
    argv = [sys.executable, "-m", "toolfleet", "map", "-p", profile, "--apply", "--json"]
    done = subprocess.run(
        [*argv, "--in-flight", "3", "-s", step, *names],
        cwd=repo,
        env=env_for(workers.settings),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    print(
        f"\n{agent} through the gateway: {len(outcomes)} items, provider accepted"
        f" {server.provider.accepted} (peak {server.provider.peak_requests} per {WINDOW} s),"
        f" 429s answered {server.provider.limited}"
    )
    assert sorted(o["key"] for o in outcomes) == sorted(names)
    assert server.provider.limited == 0 and server.provider.peak_requests <= RPM
    assert server.provider.accepted >= 2 * len(names)  # a tool call and an answer each
    assert all(o["usage"]["sent"] > 0 and o["usage"]["cost"] > 0 for o in outcomes)
    with redis.Redis.from_url(workers.settings.broker_url) as client:
        stats = upstream_stats(client)[f"fake-{agent}"]
    assert stats["waited"] > 0 and stats["throttled"] == 0
    assert stats["sent"] == sum(o["usage"]["sent"] for o in outcomes)
    assert "12 change(s) applied, 0 conflict(s)" in done.stderr
    for name in names:
        assert (repo / name).read_text().splitlines()[0] == f"# DOC_ID: {Path(name).stem}"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
