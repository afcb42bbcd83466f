"""The DOC_ID rollout on the real aider: real workers, a git worktree per instance,
``toolfleet map --step ... --apply``, and a worker SIGKILLed in the middle of an item.

Three workers run the built-in aider profile (aider from ``.aider-venv``) in worktree
workspaces of a 24-file repository; their model is ``tests/programs/fake_openai.py``.
One item's third step is held at the model until the test has found the worktree that
item edited and killed its worker: the item must run again, whole, on another instance,
and the killed worker's half-done worktree must never be committed or applied.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis

from ..gitrepo import git, make_repo
from ..helpers import eventually
from ..programs import fake_openai
from .conftest import _fresh_settings
from .procs import Workers, confined_as, map_steps_in_background
from .test_real_aider import AIDER

pytestmark = pytest.mark.skipif(
    not AIDER.is_file(),
    reason="the real aider is not installed: run scripts/aider-venv (makes .aider-venv)",
)

FILES = 24
VICTIM_FILE = "src/m05.py"
STEPS = [
    "/add {path}",
    'Add a "# DOC_ID: {stem}" header line to {path}',
    "Is {path} done?",  # a plain question: the step the test holds for one file
    "/drop {path}",
]


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path, repo: Path) -> Settings:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        f'[profiles.aider-wt]\nextends = "aider"\nworkspace = "worktree"\nrepo = "{repo}"\n'
        'sandbox = "strict"\n',
        encoding="utf-8",
    )
    return _fresh_settings(redis_server, profiles=profiles)


def edited_in(worktrees: Path, name: str) -> list[Path]:
    """The instance directories whose worktree has the header in file ``name``."""
    return [
        wt.parent
        for wt in worktrees.glob("toolfleet-wt-*/worktree")
        if (wt / name).is_file() and (wt / name).read_text().startswith("# DOC_ID:")
    ]


def test_rollout_on_real_aider_with_a_worker_killed_mid_item(
    workers: Workers, server: fake_openai.FakeOpenAI, repo: Path, tmp_path: Path
) -> None:
    names = make_repo(
        repo, {f"src/m{i:02d}.py": f'"""Module {i}."""\n\nVALUE = {i}\n' for i in range(FILES)}
    )
    start = git(repo, "rev-parse", "HEAD").strip()
    worktrees = tmp_path / "instances"
    worktrees.mkdir()
    env = {
        **fake_openai.aider_env(server.port, tmp_path),
        "PATH": f"{AIDER.parent}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(worktrees),  # where each instance makes its worktree
    }
    started = workers.start("aider-wt", 3, **env)
    confined_as(workers.wait_ready(started, timeout=180), "strict")
    held = server.hold(f"Is {VICTIM_FILE} done?")
    run = map_steps_in_background(workers.settings, repo, "aider-wt", STEPS, names)
    try:
        assert held.arrived.wait(300), "the held step never reached the model"
        # the item's header is in its worktree now, its change not yet committed
        (instance,) = eventually(lambda: edited_in(worktrees, VICTIM_FILE), 30, "the edit")
        victim = next(n for n in started if instance.name.startswith(f"toolfleet-wt-{n}-"))
        workers.stop(victim, signal.SIGKILL)
    finally:
        held.release()
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]

    outcomes = {r["key"]: r for r in map(json.loads, out.splitlines())}
    assert set(outcomes) == set(names)
    assert all(o["ok"] for o in outcomes.values()), [o for o in outcomes.values() if not o["ok"]]
    again = outcomes[VICTIM_FILE]
    assert again["attempts"] > 1, again  # retried ...
    assert not again["worker"].startswith(f"{victim}@")  # ... on another instance
    assert len(again["steps"]) == len(STEPS) and "Applied edit" in again["steps"][1]["output"]
    assert f"{FILES} change(s) applied, 0 conflict(s)" in err, err[-2000:]

    # the user's branch has every header exactly once, the tree is clean
    for name in names:
        lines = (repo / name).read_text(encoding="utf-8").splitlines()
        assert lines[0] == f"# DOC_ID: {Path(name).stem}", (name, lines[:3])
        assert sum(line.startswith("# DOC_ID:") for line in lines) == 1, name
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(repo, "merge-base", "--is-ancestor", start, "HEAD") == ""
    # the killed worker never committed the item it was in the middle of
    records = workers.fleet.changes.records()
    assert not [r for r in records if r.worker.startswith(f"{victim}@") and VICTIM_FILE in r.files]
    assert sorted(f for r in records if r.state != "empty" for f in r.files) == sorted(names)
