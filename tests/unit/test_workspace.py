"""An instance's worktree on a real git repository: commit, reset, ignored files, removal."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from toolfleet.errors import ConfigError
from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.workers.workspace import Worktree

from ..gitrepo import git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="no git")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "--quiet", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "dev")
    (root / "a.py").write_text("A = 1\n")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "start")
    return root


def worktree(repo: Path, **fields: object) -> Worktree:
    profile = BUILTIN_PROFILES["aider"].model_copy(update={"repo": str(repo), **fields})
    wt = Worktree(profile, "aider1@host")
    wt.prepare()
    return wt


def test_ignored_files_are_no_change_and_survive_resets(repo: Path) -> None:
    wt = worktree(repo)
    try:
        cache = wt.path / ".aider.tags.cache.v4" / "cache.db"
        cache.parent.mkdir()
        cache.write_text("tags")
        (wt.path / "a.py").write_text("# DOC_ID: a\nA = 1\n")
        (wt.path / "scratch.txt").write_text("left by the tool")
        record = wt.commit("c1")
        assert record.files == ["a.py", "scratch.txt"] and record.insertions == 2
        assert ".aider" not in record.patch
        wt.reset()
        assert (wt.path / "a.py").read_text() == "A = 1\n"
        assert not (wt.path / "scratch.txt").exists()  # untracked: cleaned
        assert cache.read_text() == "tags"  # ignored: kept for the next item
        assert wt.commit("c2").state == "empty"
        # the user's checkout and branch never moved
        assert git(repo, "status", "--porcelain") == ""
        assert git(repo, "log", "--format=%s", "main").split("\n")[0] == "start"
    finally:
        wt.remove()
    assert not wt.root.exists()
    assert str(wt.path) not in git(repo, "worktree", "list")


def test_without_ignore_patterns_everything_is_a_change(repo: Path) -> None:
    wt = worktree(repo, workspace_ignore=[])
    try:
        (wt.path / ".aider.chat.history.md").write_text("chat")
        assert wt.commit("c1").files == [".aider.chat.history.md"]
    finally:
        wt.remove()


def test_a_base_that_is_no_commit_is_a_config_error(repo: Path) -> None:
    profile = BUILTIN_PROFILES["aider"].model_copy(update={"repo": str(repo), "base": "nope"})
    wt = Worktree(profile, "aider1@host")
    try:
        with pytest.raises(ConfigError, match="base 'nope' is no commit of"):
            wt.prepare()
    finally:
        wt.remove()


@pytest.mark.parametrize("how", ["merge", "cherry-pick", "rebase"])
def test_a_merge_left_in_conflict_is_never_committed_and_reset_clears_it(
    repo: Path, how: str
) -> None:
    git(repo, "checkout", "--quiet", "-b", "other")
    (repo / "a.py").write_text("A = 'other'\n")
    git(repo, "commit", "--quiet", "-am", "other")
    git(repo, "checkout", "--quiet", "main")
    wt = worktree(repo)
    try:
        (wt.path / "a.py").write_text("A = 'mine'\n")
        git(wt.path, "commit", "--quiet", "-am", "the tool's own commit")
        merged = subprocess.run(["git", how, "other"], cwd=wt.path, capture_output=True)
        assert merged.returncode != 0  # a conflict: the worktree is mid-merge
        assert "<<<<<<<" in (wt.path / "a.py").read_text()
        record = wt.commit("c1")
        assert "<<<<<<<" not in record.patch and record.files == ["a.py"]
        assert git(wt.path, "show", f"{record.commit}:a.py") == "A = 'mine'\n"
        wt.reset()
        assert (wt.path / "a.py").read_text() == "A = 1\n"
        assert git(wt.path, "status", "--porcelain") == ""
    finally:
        wt.remove()
    assert git(repo, "status", "--porcelain") == ""


def test_a_worker_of_the_same_name_starts_again_after_a_kill(repo: Path) -> None:
    first = worktree(repo)
    shutil.rmtree(first.root)  # killed: its worktree is gone, git's record of it is not
    second = worktree(repo)
    try:
        assert (second.path / "a.py").read_text() == "A = 1\n"
        assert git(second.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
    finally:
        second.remove()


def test_repo_takes_variables_from_the_environment(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLFLEET_TEST_REPO", str(repo))
    profile = BUILTIN_PROFILES["aider"].model_copy(update={"repo": "$TOOLFLEET_TEST_REPO"})
    wt = Worktree(profile, "aider1@host")
    wt.prepare()
    try:
        assert wt.source == str(repo) and wt.repo == str(repo)
    finally:
        wt.remove()


def test_a_change_lists_renamed_binary_and_edited_files_with_counts_and_patch(
    repo: Path,
) -> None:
    (repo / "old name.txt").write_text("kept\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "more")
    wt = worktree(repo, workspace_ignore=[])
    try:
        git(wt.path, "mv", "old name.txt", "new name.txt")
        (wt.path / "a.py").write_text("A = 2\nB = 3\n")
        (wt.path / "blob.bin").write_bytes(b"\0\1\2")
        record = wt.commit("c1")
        assert record.state == "pending" and record.commit is not None
        assert record.files == ["a.py", "blob.bin", "new name.txt"]
        assert (record.insertions, record.deletions) == (2, 1)
        assert "rename from old name.txt" in record.patch and "+B = 3" in record.patch
        # the branch holds exactly that commit, on the base, and the patch is its diff
        assert git(wt.path, "rev-parse", record.branch).strip() == record.commit
        assert git(wt.path, "rev-parse", f"{record.commit}^").strip() == wt.base
        assert git(wt.path, "diff", wt.base, record.commit) == record.patch
    finally:
        wt.remove()


def test_the_tools_own_commits_count_as_one_commit_on_the_base_and_a_reverted_change_is_empty(
    repo: Path,
) -> None:
    wt = worktree(repo)
    try:
        (wt.path / "a.py").write_text("A = 5\n")
        git(wt.path, "commit", "--quiet", "-am", "the tool's commit")
        (wt.path / "b.py").write_text("B = 1\n")  # and more after it, not committed
        record = wt.commit("c1")
        assert record.files == ["a.py", "b.py"]
        # one commit on the base: the tool's own commits never reach a branch
        log = git(wt.path, "log", "--format=%s", record.branch).splitlines()
        assert log[:2] == ["toolfleet change c1", "start"]
        assert git(wt.path, "rev-parse", f"{record.branch}^").strip() == record.base
        wt.reset()
        # committed on a branch of its own, then reverted: nothing changed since the base
        git(wt.path, "checkout", "--quiet", "-b", "tool-branch")
        (wt.path / "a.py").write_text("A = 6\n")
        git(wt.path, "commit", "--quiet", "-am", "change")
        git(wt.path, "revert", "--no-edit", "HEAD")
        assert wt.commit("c2").state == "empty"
        # nothing left at all: no commit, no branch
        wt.reset()
        empty = wt.commit("c3")
        assert empty.state == "empty" and empty.commit is None
        assert git(repo, "branch", "--list", "toolfleet/changes/c3").strip() == ""
    finally:
        wt.remove()
