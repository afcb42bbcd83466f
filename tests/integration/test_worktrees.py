"""Worktree workspaces on real bash workers and real git: each instance edits its own
worktree, changes come back as branches, and apply merges them into the user's branch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis

from ..gitrepo import git, make_repo
from .conftest import _fresh_settings
from .procs import Workers, env_for

HEADER = "sed -i '1i # DOC_ID: {stem}' {path}"


def toolfleet(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toolfleet", *args],
        cwd=cwd,
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path, repo: Path) -> Settings:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        f'[profiles.bash-wt]\nextends = "bash"\nworkspace = "worktree"\nrepo = "{repo}"\n'
        f'[profiles.bash-nogit]\nextends = "bash"\nworkspace = "worktree"\nrepo = "{tmp_path}"\n'
        f'[profiles.bash-url]\nextends = "bash"\nworkspace = "worktree"\n'
        f'repo = "file://{tmp_path}/hosted.git"\n',
        encoding="utf-8",
    )
    return _fresh_settings(redis_server, profiles=profiles)


def test_each_instance_edits_its_own_worktree_and_changes_are_applied_on_review(
    workers: Workers, repo: Path
) -> None:
    names = make_repo(repo, {f"src/m{i}.py": f"x = {i}\n" for i in range(6)})
    start = git(repo, "rev-parse", "HEAD")
    workers.wait_ready(workers.start("bash-wt", 2))
    args = ["map", "-p", "bash-wt", "--json", "-s", HEADER, "-s", "pwd; head -1 {path}"]
    done = toolfleet(workers.settings, repo, *args, *names)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["key"] for r in records} == set(names)
    for r in records:
        where, first = r["output"].splitlines()
        assert first == f"# DOC_ID: {Path(r['key']).stem}"
        assert str(repo) not in where  # the tool ran in a worktree, not the user's checkout
        assert r["changes"]["files"] == [r["key"]] and r["changes"]["insertions"] == 1
    # nothing reached the user's checkout or branch yet
    assert git(repo, "rev-parse", "HEAD") == start and not git(repo, "status", "--porcelain")
    assert all((repo / n).read_text().startswith("x = ") for n in names)
    pending = toolfleet(workers.settings, repo, "changes", "list", "--pending")
    ids = [r["changes"]["id"] for r in records]
    assert pending.returncode == 0 and all(i in pending.stdout for i in ids)
    shown = toolfleet(workers.settings, repo, "changes", "show", ids[0])
    assert "+# DOC_ID:" in shown.stdout
    applied = toolfleet(workers.settings, repo, "changes", "apply", *ids)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("applied ") == len(ids)
    for n in names:
        assert (repo / n).read_text().splitlines()[0] == f"# DOC_ID: {Path(n).stem}"
    assert not git(repo, "status", "--porcelain")
    assert (
        toolfleet(workers.settings, repo, "changes", "list", "--pending").stdout.count("pending")
        == 0
    )


def test_a_repository_given_by_url_gets_the_branches_and_the_landed_changes(
    workers: Workers, repo: Path, tmp_path: Path
) -> None:
    """``repo`` a URL: each worker clones it and pushes its change branches there; a
    ``map --apply`` in another clone of it lands the changes on the URL's main."""
    names = make_repo(repo, {f"src/m{i}.py": f"x = {i}\n" for i in range(4)})
    hosted = tmp_path / "hosted.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(hosted))
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", f"file://{hosted}", str(checkout))
    workers.wait_ready(workers.start("bash-url", 2))
    args = ["map", "-p", "bash-url", "--apply", "--json", "-s", HEADER]
    done = toolfleet(workers.settings, checkout, *args, *names)
    assert done.returncode == 0, done.stderr
    assert f"{len(names)} change(s) applied" in done.stderr
    changes = [json.loads(line)["changes"] for line in done.stdout.splitlines()]
    for change in changes:  # every change branch is on the URL's repository
        record = workers.fleet.changes.get(change["id"])
        assert record.state == "applied" and record.commit is not None
        assert git(hosted, "rev-parse", change["branch"]).strip() == record.commit
    main = git(hosted, "rev-parse", "main").strip()
    assert git(checkout, "rev-parse", "main").strip() == main  # pushed: the same tip
    for name in names:
        text = git(hosted, "show", f"{main}:{name}")
        assert text.count("# DOC_ID:") == 1 and text.startswith(f"# DOC_ID: {Path(name).stem}")
    assert not git(checkout, "status", "--porcelain")


def test_map_apply_conflicts_and_a_dirty_target(workers: Workers, repo: Path) -> None:
    names = make_repo(repo, {f"src/m{i}.py": f"x = {i}\n" for i in range(3)})
    workers.wait_ready(workers.start("bash-wt"))
    # --apply merges as items complete
    done = toolfleet(
        workers.settings, repo, "map", "-p", "bash-wt", "--apply", "-s", HEADER, *names
    )
    assert done.returncode == 0, done.stderr
    assert "3 change(s) applied, 0 conflict(s)" in done.stderr
    assert all((repo / n).read_text().startswith("# DOC_ID:") for n in names)
    # a change made on an older base that conflicts with the target: refused whole
    edit = "sed -i '1s/.*/# DOC_ID: other/' {path}"
    made = toolfleet(workers.settings, repo, "map", "-p", "bash-wt", "--json", "-s", edit, names[0])
    change = json.loads(made.stdout)["changes"]["id"]
    (repo / names[0]).write_text("# DOC_ID: mine\nx = 0\n", encoding="utf-8")
    dirty = toolfleet(workers.settings, repo, "changes", "apply", change)
    assert dirty.returncode == 1 and "DirtyTarget" in dirty.stderr
    git(repo, "commit", "--quiet", "-am", "mine")
    head = git(repo, "rev-parse", "HEAD")
    conflict = toolfleet(workers.settings, repo, "changes", "apply", change)
    assert conflict.returncode == 1 and f"conflict: {change}" in conflict.stderr
    assert names[0] in conflict.stderr
    assert git(repo, "rev-parse", "HEAD") == head and not git(repo, "status", "--porcelain")


def test_a_worktree_profile_without_a_git_repository_fails_the_worker_saying_why(
    workers: Workers,
) -> None:
    workers.start("bash-nogit")
    record = None
    for _ in range(200):
        record = next((h for h in workers.fleet.status() if h.profile == "bash-nogit"), None)
        if record is not None and record.state == "failed":
            break
        time.sleep(0.1)
    assert record is not None and record.state == "failed"
    assert record.last_error is not None and "is no git repository" in record.last_error


def test_apply_from_a_subdirectory_onto_another_branch_leaves_the_checkout_alone(
    workers: Workers, repo: Path
) -> None:
    names = make_repo(repo, {f"src/m{i}.py": f"x = {i}\n" for i in range(2)})
    git(repo, "branch", "release")
    workers.wait_ready(workers.start("bash-wt"))
    made = toolfleet(workers.settings, repo, "map", "-p", "bash-wt", "--json", "-s", HEADER, *names)
    by_key = {r["key"]: r["changes"]["id"] for r in map(json.loads, made.stdout.splitlines())}
    ids = [by_key[n] for n in names]  # the lines come in the order the items ended
    (repo / names[0]).write_text("x = 'an edit of mine'\n", encoding="utf-8")  # dirty main
    main_head = git(repo, "rev-parse", "main")
    # another branch is merged in a worktree of its own: the dirty checkout is no matter
    onto = toolfleet(workers.settings, repo / "src", "changes", "apply", "--onto", "release", *ids)
    assert onto.returncode == 0, onto.stderr
    assert onto.stdout.count("applied ") == 2
    for n in names:
        shown = git(repo, "show", f"release:{n}")
        assert shown.splitlines()[0] == f"# DOC_ID: {Path(n).stem}"
    assert git(repo, "rev-parse", "main") == main_head
    assert (repo / names[0]).read_text() == "x = 'an edit of mine'\n"
    # the branch checked out, from a subdirectory, dirty: refused, naming the checkout
    here = toolfleet(workers.settings, repo / "src", "changes", "apply", ids[0])
    assert here.returncode == 1 and "DirtyTarget" in here.stderr and "src" in here.stderr
    # clean and detached: merged onto the detached HEAD, no branch moved
    git(repo, "checkout", "--quiet", "--", ".")
    git(repo, "checkout", "--quiet", "--detach")
    detached = toolfleet(workers.settings, repo / "src", "changes", "apply", ids[0])
    assert detached.returncode == 0, detached.stderr
    assert (repo / names[0]).read_text().startswith("# DOC_ID:")
    assert git(repo, "rev-parse", "main") == main_head
