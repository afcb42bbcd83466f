"""The merge queue on real bash workers and real git: changes land one at a time on the
moving tip, checked once merged; what conflicts or breaks the check is redone on the new
tip; a producer killed mid-apply is resumed from its journal, nothing applied twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis

from ..gitrepo import git, make_repo
from ..helpers import eventually
from .conftest import _fresh_settings
from .procs import Workers, env_for
from .test_worktrees import toolfleet

HEADER = "sed -i '1i # DOC_ID: {stem}' {path}"
#: items p0 and p1 both append to pair0.txt, p2 and p3 to pair1.txt, ...: pairs conflict
PAIRED = HEADER + "; n={stem}; echo $n >> pair$(( ${n#p} / 2 )).txt"


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path) -> Settings:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        f'[profiles.bash-wt]\nextends = "bash"\nworkspace = "worktree"\n'
        f'repo = "{tmp_path / "repo"}"\nsandbox = "auto"\n',
        encoding="utf-8",
    )
    return _fresh_settings(redis_server, profiles=profiles)


def first_parents(repo: Path, start: str) -> list[str]:
    """The commits the branch gained since ``start``, oldest first (its own line)."""
    out = git(repo, "rev-list", "--first-parent", "--reverse", f"{start}..HEAD")
    return out.split()


def changes_merged(repo: Path, start: str) -> list[str]:
    """The change commits the branch merged since ``start`` (each merge's other parents)."""
    lines = git(repo, "log", "--first-parent", "--format=%P", f"{start}..HEAD").splitlines()
    return [parent for line in lines for parent in line.split()[1:]]


def passes(repo: Path, commit: str, check: str) -> bool:
    place = repo.parent / f"at-{commit[:8]}"
    git(repo, "worktree", "add", "--quiet", "--detach", str(place), commit)
    try:
        return subprocess.run(["sh", "-c", check], cwd=place).returncode == 0
    finally:
        git(repo, "worktree", "remove", "--force", str(place))


def test_pairs_that_conflict_are_redone_on_the_new_tip(workers: Workers, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    names = make_repo(repo, {f"p{i}.py": f"x = {i}\n" for i in range(8)})
    start = git(repo, "rev-parse", "HEAD").strip()
    workers.wait_ready(workers.start("bash-wt", 4))
    done = toolfleet(
        workers.settings,
        repo,
        "map",
        "-p",
        "bash-wt",
        "--json",
        "--apply",
        "--in-flight",
        "8",
        "-s",
        PAIRED,
        *names,
    )
    assert done.returncode == 0, done.stderr
    print(done.stderr)
    assert "redo 1:" in done.stderr  # the second of a pair conflicted, and was redone
    assert "0 conflict(s)" in done.stderr
    # a redone item's outcome comes again (the last line of a key is how it ended)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    last = {r["key"]: r for r in records}
    assert len(records) == len(names) + 4 and sorted(last) == sorted(names)
    assert all(r["ok"] for r in last.values())
    for name in names:  # each file's change once, each pair file with both lines
        assert (repo / name).read_text().count("# DOC_ID:") == 1
    for k in range(4):
        assert sorted((repo / f"pair{k}.txt").read_text().split()) == [f"p{2 * k}", f"p{2 * k + 1}"]
    assert len(first_parents(repo, start)) == len(names)
    assert not git(repo, "status", "--porcelain")


def test_the_branch_never_holds_a_commit_that_fails_the_check(
    workers: Workers, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    names = make_repo(repo, {f"f{i}.txt": "" for i in range(6)})
    start = git(repo, "rev-parse", "HEAD").strip()
    workers.wait_ready(workers.start("bash-wt", 2))
    # alone every change passes; merged, only three of them fit under the limit
    check = 'test "$(cat f*.txt | wc -l)" -le 3'
    done = toolfleet(
        workers.settings,
        repo,
        "map",
        "-p",
        "bash-wt",
        "--apply",
        "--redo",
        "1",
        "--check",
        check,
        "-s",
        "echo {stem} >> {path}",
        *names,
    )
    assert done.returncode == 1, done.stderr
    # three broke the check once merged; redone on the new tip their own check fails
    assert "redo 1: 3 item(s)" in done.stderr, done.stderr
    assert "3 change(s) applied, 3 redone on a newer tip" in done.stderr
    assert done.stdout.count("CheckFailed") >= 3, done.stdout
    landed = first_parents(repo, start)  # a train lands several in one merge commit
    assert len(changes_merged(repo, start)) == 3
    assert all(passes(repo, commit, check) for commit in landed)
    assert int(subprocess.check_output(["sh", "-c", "cat f*.txt | wc -l"], cwd=repo)) == 3


def test_a_producer_killed_mid_apply_is_resumed_and_nothing_is_applied_twice(
    workers: Workers, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    names = make_repo(repo, {f"k{i}.py": f"x = {i}\n" for i in range(6)})
    start = git(repo, "rev-parse", "HEAD").strip()
    journal = tmp_path / "journal.jsonl"
    workers.wait_ready(workers.start("bash-wt", 3))
    args = [
        "map",
        "-p",
        "bash-wt",
        "--apply",
        "--journal",
        str(journal),
        "--check",
        "sleep 1; grep -q DOC_ID {path}",
        "-s",
        HEADER,
        *names,
    ]
    producer = subprocess.Popen(
        [sys.executable, "-m", "toolfleet", *args],
        cwd=repo,
        env=env_for(workers.settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # killed once the first change has landed and the rest are still checked or queued
    eventually(lambda: len(first_parents(repo, start)) >= 1, 120, "a change landed")
    producer.send_signal(signal.SIGKILL)
    producer.wait()
    before = len(first_parents(repo, start))
    assert before < len(names)
    git(repo, "checkout", "--quiet", "--force", "HEAD")  # a fast-forward cut short: tidy
    again = toolfleet(workers.settings, repo, *args)
    assert again.returncode == 0, again.stderr
    landed = first_parents(repo, start)  # trains: a merge commit may land several
    print(f"merge commits before the kill: {before}; after the re-run: {len(landed)}")
    for name in names:  # every change landed, none twice
        assert (repo / name).read_text().count("# DOC_ID:") == 1, name
    assert len(changes_merged(repo, start)) == len(names)  # each change merged once
