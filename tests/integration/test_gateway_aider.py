"""The real aider behind the model gateway, on a provider that enforces its limits.

Six aider workers (worktree workspaces, ``toolfleet map --step ...``) roll out a header
to many files while ``tests/programs/fake_openai.py`` plays a provider that allows 20
requests a minute and answers 429 with Retry-After past it. Through the gateway no agent
sees a 429 and the provider's limit holds; without it the same agents meet 429s (the
fake bites). The provider's "quota exhausted" stops a map cleanly, and a re-run with its
journal finishes it; an item's budget stops its agent before the call that passes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis
from toolfleet.gateway.stats import upstream_stats
from toolfleet.keys import gateway_key

from ..gitrepo import git, make_repo
from ..helpers import eventually
from ..installed import AIDER
from ..programs import fake_openai
from .conftest import _fresh_settings
from .procs import Workers, env_for, map_steps_in_background

pytestmark = pytest.mark.skipif(
    not AIDER.is_file(),
    reason="the real aider is not installed: run scripts/aider-venv (makes .aider-venv)",
)

STEPS = ["/add {path}", 'Add a "# DOC_ID: {stem}" header line to {path}', "/drop {path}"]
UPSTREAM = "fake-openai"


@pytest.fixture
def settings(
    redis_server: EmbeddedRedis, tmp_path: Path, repo: Path, server: fake_openai.FakeOpenAI
) -> Settings:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        f"""
[upstreams.{UPSTREAM}]
kind = "openai"
url = "http://127.0.0.1:{server.port}/v1"
rpm = 20
quota_pause = 2
prices = {{ "*" = [1.0, 4.0] }}

[profiles.aider-gw]
extends = "aider"
workspace = "worktree"
repo = "{repo}"
upstream = "{UPSTREAM}"

[profiles.aider-direct]
extends = "aider"
workspace = "worktree"
repo = "{repo}"
""",
        encoding="utf-8",
    )
    return _fresh_settings(redis_server, profiles=profiles)


def files(repo: Path, count: int) -> list[str]:
    return make_repo(
        repo, {f"src/m{i:02d}.py": f'"""Module {i}."""\n\nVALUE = {i}\n' for i in range(count)}
    )


def aider_env(server: fake_openai.FakeOpenAI, tmp_path: Path) -> dict[str, str]:
    worktrees = tmp_path / "instances"
    worktrees.mkdir(exist_ok=True)
    return {
        **fake_openai.aider_env(server.port, tmp_path),
        "PATH": f"{AIDER.parent}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(worktrees),
    }


def rollout(
    workers: Workers, repo: Path, profile: str, names: list[str], *extra: str
) -> tuple[int, list[dict[str, object]], str]:
    """``toolfleet map --step ...`` over ``names``: exit status, outcomes, stderr."""
    argv = [sys.executable, "-m", "toolfleet", "map", "-p", profile, "--json"]
    argv += ["--in-flight", "6", *[a for s in STEPS for a in ("-s", s)], *extra, *names]
    done = subprocess.run(
        argv, cwd=repo, env=env_for(workers.settings), capture_output=True, text=True, timeout=900
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def edit_calls(server: fake_openai.FakeOpenAI) -> list[dict[str, object]]:
    return [r for r in server.requests if r.get("kind") == "edit"]


def test_a_rollout_through_the_gateway_keeps_the_providers_limit_and_sees_no_429(
    workers: Workers, server: fake_openai.FakeOpenAI, repo: Path, tmp_path: Path
) -> None:
    server.provider.rpm = 20  # a minute's window, as the upstream says
    names = files(repo, 60)
    workers.wait_ready(workers.start("aider-gw", 6, **aider_env(server, tmp_path)), 240)
    status, outcomes, err = rollout(workers, repo, "aider-gw", names, "--apply")
    assert status == 0, err[-3000:]
    assert sorted(o["key"] for o in outcomes) == sorted(names)
    assert all(o["ok"] for o in outcomes), [o for o in outcomes if not o["ok"]][:3]
    print(
        f"\ngateway rollout: {len(outcomes)} items, provider accepted {server.provider.accepted}"
        f" (peak {server.provider.peak_requests} a minute), 429s answered"
        f" {server.provider.limited}"
    )
    assert server.provider.limited == 0  # no agent saw a 429: none was even answered
    assert server.provider.peak_requests <= 20  # the provider's limit held
    assert len(edit_calls(server)) >= 60
    # every item's usage is the provider's own count, read from the wire and priced
    sent = sum(int(r["usage"]["prompt_tokens"]) for r in server.requests)  # type: ignore[index]
    received = sum(int(r["usage"]["completion_tokens"]) for r in server.requests)  # type: ignore[index]
    usage = [o["usage"] for o in outcomes]
    assert sum(u["sent"] for u in usage) == sent  # type: ignore[index]
    assert sum(u["received"] for u in usage) == received  # type: ignore[index]
    assert abs(sum(u["cost"] for u in usage) - (sent + 4 * received) / 1e6) < 1e-6  # type: ignore[index]
    with redis.Redis.from_url(workers.settings.broker_url) as client:
        stats = upstream_stats(client)[UPSTREAM]
    assert stats["waited"] > 0 and stats["throttled"] == 0
    assert stats["sent"] == sent and stats["received"] == received
    assert f"{len(names)} change(s) applied, 0 conflict(s)" in err
    for name in names:
        assert (repo / name).read_text().startswith(f"# DOC_ID: {Path(name).stem}\n")


def test_without_the_gateway_the_same_agents_meet_the_providers_429s(
    workers: Workers, server: fake_openai.FakeOpenAI, repo: Path, tmp_path: Path
) -> None:
    server.provider.rpm, server.provider.window = 6, 15.0  # the same bite, sooner
    names = files(repo, 12)
    workers.wait_ready(workers.start("aider-direct", 6, **aider_env(server, tmp_path)), 240)
    rollout(workers, repo, "aider-direct", names)
    print(f"\ndirect rollout: the agents were answered {server.provider.limited} 429s")
    assert server.provider.limited > 0


def test_quota_exhausted_mid_map_stops_it_and_a_rerun_with_the_journal_finishes(
    workers: Workers, server: fake_openai.FakeOpenAI, repo: Path, tmp_path: Path
) -> None:
    server.provider.quota_after = 8
    names = files(repo, 16)
    journal = tmp_path / "journal.jsonl"
    workers.wait_ready(workers.start("aider-gw", 3, **aider_env(server, tmp_path)), 240)
    status, outcomes, err = rollout(
        workers, repo, "aider-gw", names, "--journal", str(journal), "--apply"
    )
    assert status == 1 and "quota exhausted" in err, err[-3000:]
    assert all(o["ok"] for o in outcomes)  # none failed: the rest were not run
    first = {str(o["key"]) for o in outcomes}
    assert 0 < len(first) <= 8
    assert f"{16 - len(first)} not run (quota exhausted)" in err

    server.provider.quota_after = None  # the quota is back; and the pause of 2 s over
    with redis.Redis.from_url(workers.settings.broker_url) as client:
        paused = gateway_key(UPSTREAM, "quota")
        eventually(lambda: not client.exists(paused), 30, "the quota pause over")
    status, again, err = rollout(
        workers, repo, "aider-gw", names, "--journal", str(journal), "--apply"
    )
    assert status == 0, err[-3000:]
    assert {str(o["key"]) for o in again} == set(names) - first
    assert all(o["ok"] for o in again)
    for name in names:  # every change applied, once
        lines = (repo / name).read_text().splitlines()
        assert sum(line.startswith("# DOC_ID:") for line in lines) == 1, name
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_an_items_budget_stops_its_agent_before_the_call_that_passes_it(
    workers: Workers, server: fake_openai.FakeOpenAI, repo: Path, tmp_path: Path
) -> None:
    names = files(repo, 2)
    workers.wait_ready(workers.start("aider-gw", 1, **aider_env(server, tmp_path)), 240)
    # the edit costs about 0.001 at $1 a million tokens in; the second call would pass
    # the budget: the item is stopped between its two model calls
    argv = [sys.executable, "-m", "toolfleet", "map", "-p", "aider-gw", "--json"]
    argv += ["-s", "/add {path}", "-s", 'Add a "# DOC_ID: {stem}" header line to {path}']
    argv += ["-s", "Is {path} done?", "--item-budget", "0.0015", names[0]]
    done = subprocess.run(
        argv, cwd=repo, env=env_for(workers.settings), capture_output=True, text=True, timeout=300
    )
    (outcome,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1
    assert not outcome["ok"] and outcome["error_type"] == "BudgetSpent", outcome
    assert len(server.requests) == 1  # the edit went; the question never reached the model
    assert 0 < outcome["usage"]["cost"] <= 0.0015


def owner_of(port: int) -> int:
    """The process holding the TCP connection whose local port is ``port``."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    inode = next(f[9] for f in map(str.split, lines) if int(f[1].split(":")[1], 16) == port)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in fds):
                return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process holds port {port}")


def test_a_gateway_killed_mid_call_loses_nothing(
    workers: Workers, server: fake_openai.FakeOpenAI, repo: Path, tmp_path: Path
) -> None:
    """The gateway lives in its worker: killed (SIGKILL) with a model call in flight,
    the item runs again whole on another instance, and every change lands once."""
    names = files(repo, 6)
    victim_file = names[2]
    started = workers.start("aider-gw", 3, **aider_env(server, tmp_path))
    workers.wait_ready(started, 240)
    held = server.hold(f"header line to {victim_file}")
    run = map_steps_in_background(workers.settings, repo, "aider-gw", STEPS, names)
    try:
        assert held.arrived.wait(300), "the held call never reached the provider"
        (peer,) = [r["peer"] for r in server.requests if r.get("held")]
        pid = owner_of(int(peer))  # the worker whose gateway's connection waits
        holder = next(name for name, proc in workers.procs.items() if proc.pid == pid)
        workers.stop(holder, signal.SIGKILL)
    finally:
        held.release()
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]
    outcomes = {o["key"]: o for o in map(json.loads, out.splitlines())}
    assert set(outcomes) == set(names) and all(o["ok"] for o in outcomes.values())
    assert outcomes[victim_file]["attempts"] > 1
    assert not str(outcomes[victim_file]["worker"]).startswith(f"{holder}@")
    for name in names:
        lines = (repo / name).read_text().splitlines()
        assert sum(line.startswith("# DOC_ID:") for line in lines) == 1, name
