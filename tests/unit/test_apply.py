"""Applying change branches to a real git checkout: merges made in the object store and
one fast-forward a batch; merge hooks, conflicts and errors as ``git merge`` has them."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from toolfleet.client.changes import ChangeBook
from toolfleet.keys import change_key
from toolfleet.models import Changes
from toolfleet.workers.workspace import change_branch

from ..gitrepo import git, make_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="no git")


class Store:
    """The two Redis calls a ChangeBook's apply makes (unit test: no server)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str, px: int | None = None) -> None:
        self.values[key] = value


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    make_repo(root, {f"m{i}.py": f"V = {i}\n" for i in range(4)})
    return root


def change(repo: Path, book: ChangeBook, name: str, files: dict[str, str]) -> str:
    """A change branch off main writing ``files``, and its record in ``book``."""
    branch = change_branch(name)
    git(repo, "checkout", "--quiet", "-b", branch, "main")
    for path, text in files.items():
        (repo / path).write_text(text)
    git(repo, "commit", "--quiet", "-am", f"change {name}")
    commit = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "--quiet", "main")
    record = Changes(
        id=name,
        worker="w",
        repo=str(repo),
        branch=branch,
        base="",
        commit=commit,
        files=sorted(files),
        created_at=time.time(),
    )
    book.client.set(change_key(name), record.model_dump_json())
    return name


def test_a_batch_is_merged_change_by_change_and_a_conflict_left_out(repo: Path) -> None:
    book = ChangeBook(Store(), ttl=60)
    ids = [
        change(repo, book, f"c{i}", {f"m{i}.py": f"# DOC_ID: m{i}\nV = {i}\n"}) for i in range(3)
    ]
    clash = change(repo, book, "x", {"m1.py": "V = 'other'\n"})
    result = book.apply([ids[0], ids[1], clash, ids[2]], repo=repo)
    assert result.applied == ids
    assert result.conflicts == {clash: ["m1.py"]}
    # a merge commit a change, in order, each with the change as its second parent
    subjects = git(repo, "log", "--format=%s %p", "--first-parent", "-3").splitlines()
    assert [s.split()[3] for s in subjects] == ["c2", "c1", "c0"]
    assert all(len(s.split()) == 6 for s in subjects)  # 'toolfleet: apply change cN' + 2
    for i in range(3):
        assert (repo / f"m{i}.py").read_text().startswith(f"# DOC_ID: m{i}\n")
    assert git(repo, "status", "--porcelain") == ""  # checkout, index and branch agree
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert [book.get(i).state for i in ids] == ["applied"] * 3
    assert book.get(clash).state == "pending"


def test_a_change_already_in_the_target_makes_no_commit(repo: Path) -> None:
    book = ChangeBook(Store(), ttl=60)
    first = change(repo, book, "c0", {"m0.py": "V = 'new'\n"})
    assert book.apply([first], repo=repo).applied == [first]
    head = git(repo, "rev-parse", "HEAD")
    again = book.apply([first], repo=repo)
    assert again.applied == [first] and again.conflicts == {}
    assert git(repo, "rev-parse", "HEAD") == head


def test_merge_hooks_run_through_git_merge(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "post-merge"
    hook.write_text('#!/bin/sh\necho merged >> "$(git rev-parse --git-dir)/merged.log"\n')
    hook.chmod(0o755)
    book = ChangeBook(Store(), ttl=60)
    ids = [change(repo, book, f"c{i}", {f"m{i}.py": f"V = -{i}\n"}) for i in range(2)]
    assert book.apply(ids, repo=repo).applied == ids
    assert (repo / ".git" / "merged.log").read_text() == "merged\nmerged\n"  # once a change


def test_an_error_in_the_batch_is_reported_and_the_changes_before_it_stay(
    repo: Path,
) -> None:
    book = ChangeBook(Store(), ttl=60)
    good = change(repo, book, "c0", {"m0.py": "V = 'ok'\n"})
    gone = change(repo, book, "c1", {"m1.py": "V = 'gone'\n"})
    git(repo, "branch", "--quiet", "-D", change_branch(gone))  # its branch deleted by hand
    later = change(repo, book, "c2", {"m2.py": "V = 'later'\n"})
    result = book.apply([good, gone, later], repo=repo)
    assert result.applied == [good, later]
    assert list(result.conflicts) == [gone]
    assert (repo / "m0.py").read_text() == "V = 'ok'\n"
    assert (repo / "m2.py").read_text() == "V = 'later'\n"
    assert git(repo, "status", "--porcelain") == ""
