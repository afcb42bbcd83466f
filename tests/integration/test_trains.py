"""The merge queue's trains on real git and a real Redis (no workers): changes given
together land as one checked merge commit; a failing train is bisected down to the change
that breaks the check; a conflicting one is left out; nothing lands twice."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from toolfleet import Settings
from toolfleet.client.changes import ChangeBook
from toolfleet.client.fleet import Fleet
from toolfleet.client.mergequeue import MergeQueue
from toolfleet.models import Changes

from ..gitrepo import git, make_repo

#: passes while no file holds the word "bad"
CHECK = "! grep -rq bad --include=*.txt ."


def change(repo: Path, book: ChangeBook, name: str, files: dict[str, str]) -> str:
    """A change made by hand as a worker makes one: a commit on the base, on its branch."""
    base = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "--quiet", "--detach", base)
    for path, text in files.items():
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", name)
    commit = git(repo, "rev-parse", "HEAD").strip()
    branch = f"toolfleet/changes/{name}"
    git(repo, "branch", "--force", branch, commit)
    git(repo, "checkout", "--quiet", "main")
    record = Changes(
        id=name,
        worker="w@h",
        repo=str(repo),
        branch=branch,
        base=base,
        commit=commit,
        files=sorted(files),
        state="ready",
        created_at=time.time(),
    )
    book.client.set(f"toolfleet:change:{name}", record.model_dump_json())
    return name


def passes(repo: Path, commit: str) -> bool:
    files = git(repo, "ls-tree", "-r", "--name-only", commit).split()
    texts = [git(repo, "show", f"{commit}:{f}") for f in files if f.endswith(".txt")]
    return not any("bad" in t for t in texts)


def test_a_train_lands_as_one_checked_commit_and_a_bad_change_is_bisected_out(
    settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"base.txt": "ok\n"})
    start = git(repo, "rev-parse", "HEAD").strip()
    with Fleet(settings) as fleet:
        book = fleet.changes
        good = [change(repo, book, f"g{i}", {f"g{i}.txt": "fine\n"}) for i in range(5)]
        bad = change(repo, book, "b", {"b.txt": "bad\n"})
        clash = change(repo, book, "c", {"g0.txt": "other\n"})  # conflicts with g0
        queue = MergeQueue(book, repo, check=CHECK, check_timeout=60)
        done = queue.land([*good[:3], bad, clash, *good[3:]])
        assert sorted(done.applied) == sorted(good)
        assert set(done.broken) == {bad} and set(done.conflicts) == {clash}
        line = git(repo, "rev-list", "--first-parent", "--reverse", f"{start}..main").split()
        assert 1 < len(line) < len(good)  # bisected: fewer merge commits than changes
        assert all(passes(repo, commit) for commit in line)
        assert all(book.get(g).state == "applied" for g in good)
        # again: nothing lands twice
        again = queue.land(good)
        assert sorted(again.already) == sorted(good) and not again.applied
        assert git(repo, "rev-list", "--first-parent", "--count", f"{start}..main").strip() == str(
            len(line)
        )
    assert (
        subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True
        ).stdout
        == ""
    )


def test_a_train_that_passes_is_one_merge_commit_of_every_change(
    settings: Settings, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"base.txt": "ok\n"})
    start = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "branch", "landing")
    with Fleet(settings) as fleet:
        ids = [change(repo, fleet.changes, f"t{i}", {f"t{i}.txt": "fine\n"}) for i in range(4)]
        queue = MergeQueue(fleet.changes, repo, "landing", check=CHECK, check_timeout=60)
        done = queue.land(ids)
    assert done.applied == ids
    (merge,) = git(repo, "rev-list", "--first-parent", f"{start}..landing").split()
    parents = git(repo, "rev-list", "--parents", "-n", "1", merge).split()[1:]
    assert len(parents) == 1 + len(ids) and parents[0] == start
    assert git(repo, "rev-parse", "main").strip() == start  # the checkout's branch untouched
