"""Verified changes on the real aider: a 100-file rollout where the fake model breaks 15 %
of its first answers (a syntax error or a failing assertion) and fixes them when shown the
check's output. Every item ends ready after repair turns, ``--apply`` lands them one at a
time, and the branch passes the repository's test suite after every commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..gitrepo import git, make_repo
from ..programs import fake_openai
from .procs import Workers, env_for
from .test_real_aider import AIDER
from .test_real_aider_rollout import settings  # noqa: F401  (its aider-wt profile)

pytestmark = pytest.mark.skipif(
    not AIDER.is_file(),
    reason="the real aider is not installed: run scripts/aider-venv (makes .aider-venv)",
)

FILES = 100
STEPS = ["/add {path}", 'Add a "# DOC_ID: {stem}" header line to {path}']
#: the repository's test suite: every module's VALUE, and every module importable
#: plugins not loaded: the suite needs none, and the venv's (xdist, celery, playwright)
#: would cost seconds a run
SUITE = (
    f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -x -p no:cacheprovider tests"
)
TEST_FILE = """import importlib

import pytest


@pytest.mark.parametrize("number", range({count}))
def test_value(number: int) -> None:
    module = importlib.import_module(f"src.m{{number:02d}}")
    assert module.VALUE == number
"""


@pytest.mark.timeout(1200)  # 100 aider items with checks, then the suite on 100 commits
def test_a_rollout_with_slips_is_repaired_checked_and_landed_without_a_broken_commit(
    workers: Workers, server: fake_openai.FakeOpenAI, repo: Path, tmp_path: Path
) -> None:
    files = {f"src/m{i:02d}.py": f'"""Module {i}."""\n\nVALUE = {i}\n' for i in range(FILES)}
    names = make_repo(
        repo,
        {
            **files,
            "src/__init__.py": "",
            "tests/__init__.py": "",
            "tests/test_values.py": TEST_FILE.format(count=FILES),
        },
    )[:FILES]
    start = git(repo, "rev-parse", "HEAD").strip()
    server.slipping = set(names[::7])  # 15 of the 100 first answers break the suite
    env = {
        **fake_openai.aider_env(server.port, tmp_path),
        "PATH": f"{AIDER.parent}{os.pathsep}{os.environ['PATH']}",
    }
    workers.wait_ready(workers.start("aider-wt", 4, **env), timeout=180)
    argv = [sys.executable, "-m", "toolfleet", "map", "-p", "aider-wt", "--json", "--apply"]
    argv += ["--check", SUITE, "--repair", "2", "--retries", "1", "--in-flight", "4"]
    argv += [a for step in STEPS for a in ("-s", step)]
    done = subprocess.run(
        [*argv, *names],
        cwd=repo,
        env=env_for(workers.settings),
        capture_output=True,
        text=True,
        timeout=1200,
        stdin=subprocess.DEVNULL,
    )
    print(done.stderr[-1500:])
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = {r["key"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(outcomes) == set(names)
    assert sorted(server.slipped) == sorted(server.slipping)  # the fake did bite
    for name, o in outcomes.items():
        assert o["ok"] and o["check"]["passed"] and o["changes"]["state"] == "ready", o
        assert o["repairs"] == (1 if name in server.slipping else 0), o
    assert sorted(server.repaired) == sorted(server.slipping)
    assert f"{FILES} change(s) applied, 0 conflict(s), 0 broken once merged" in done.stderr

    # every state the branch held since the start passes the suite
    # the branch's own commits: merge commits of one change or of a train of them,
    # every change merged once
    landed = git(repo, "rev-list", "--first-parent", "--reverse", f"{start}..HEAD").split()
    parents = git(repo, "log", "--first-parent", "--format=%P", f"{start}..HEAD").splitlines()
    merged = [p for line in parents for p in line.split()[1:]]
    assert len(merged) == len(set(merged)) == FILES and len(landed) <= FILES
    print(f"{FILES} changes landed in {len(landed)} merge commits")
    walk = tmp_path / "walk"
    git(repo, "worktree", "add", "--quiet", "--detach", str(walk), start)
    for commit in landed:
        git(walk, "checkout", "--quiet", "--force", commit)
        suite = subprocess.run(SUITE, shell=True, cwd=walk, capture_output=True, text=True)
        assert suite.returncode == 0, (commit, suite.stdout[-2000:])
    for name in names:
        text = (repo / name).read_text(encoding="utf-8")
        assert text.startswith(f"# DOC_ID: {Path(name).stem}\n") and "slip" not in text, name
