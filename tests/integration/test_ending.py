"""The fence between a producer and a worker on a real Redis: a change is recorded only
while its producer says keep; a producer that gave up, or a run that stopped before it
heard back, never finds a stale change later. And landing on a repository given by URL:
fetched first, pushed after, marked applied only once pushed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import toolfleet.client.remote as remote
from toolfleet import Settings
from toolfleet.client.changes import ChangeBook
from toolfleet.client.journal import Journal
from toolfleet.client.mergequeue import MergeQueue
from toolfleet.ending import (
    DISCARD,
    RECORDED,
    end_mark,
    fail_if_kept,
    give_up,
    mark_end,
    record_if_kept,
)
from toolfleet.errors import ChangeNotRecorded, GitError
from toolfleet.keys import health_key
from toolfleet.models import Changes

from ..gitrepo import git, make_repo


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(settings.broker_url) as made:
        yield made


def change(session: str, commit: str | None = None, repo: str = "/repo") -> Changes:
    return Changes(
        id=session,
        worker="w1@h",
        repo=repo,
        branch=f"toolfleet/changes/{session}",
        base="0" * 40,
        commit=commit,
        files=["a.txt"] if commit else [],
        state="pending" if commit else "empty",
        created_at=time.time(),
    )


def test_a_change_is_recorded_only_while_its_producer_says_keep(client: redis.Redis) -> None:
    book = ChangeBook(client, 60)
    assert not record_if_kept(client, change("s0"), 60)  # no word: the producer went away
    mark_end(client, "s1", keep=False)
    assert not record_if_kept(client, change("s1"), 60)
    mark_end(client, "s2", keep=True)
    assert record_if_kept(client, change("s2"), 60)
    assert end_mark(client, "s2") == RECORDED
    assert give_up(client, "s2") == RECORDED  # too late to give up: it is there
    assert [r.id for r in book.records()] == ["s2"]
    mark_end(client, "s3", keep=True)
    assert give_up(client, "s3") == DISCARD  # given up first: the worker's record fails
    assert not record_if_kept(client, change("s3"), 60)
    assert [r.id for r in book.records()] == ["s2"]


def test_settle_returns_the_record_or_says_why_there_is_none(client: redis.Redis) -> None:
    book = ChangeBook(client, 60)
    client.set(health_key("w1@h"), "{}")
    mark_end(client, "s1", keep=True)
    record_if_kept(client, change("s1"), 60)
    assert book.settle("s1", "w1@h").id == "s1"
    mark_end(client, "s2", keep=True)
    fail_if_kept(client, "s2", "GitError: the git host is away")
    with pytest.raises(ChangeNotRecorded, match="the git host is away"):
        book.settle("s2", "w1@h")
    mark_end(client, "s3", keep=True)
    with pytest.raises(ChangeNotRecorded, match="no record after"):
        book.settle("s3", "w1@h", timeout=0.3)
    assert end_mark(client, "s3") == DISCARD  # a worker coming back later records nothing
    client.delete(health_key("w1@h"))  # the worker froze, was cut off or died
    mark_end(client, "s4", keep=True)
    with pytest.raises(ChangeNotRecorded, match="went away"):
        book.settle("s4", "w1@h")
    assert not record_if_kept(client, change("s4"), 60)


def test_a_resumed_run_abandons_what_its_stopped_run_closed_unheard(
    client: redis.Redis, tmp_path: Path
) -> None:
    book = ChangeBook(client, 60)
    with Journal(tmp_path / "journal.jsonl") as journal:
        for session in ("heard", "recorded-unheard", "unrecorded"):
            journal.intend(f"item-{session}", session)
            mark_end(client, session, keep=True)
        record_if_kept(client, change("heard", "1" * 40), 60)
        record_if_kept(client, change("recorded-unheard", "2" * 40), 60)
        # the run heard back of one only, then stopped
        journal._append({"key": "item-heard", "ok": True, "changes": {"id": "heard"}})
    unsettled = Journal(tmp_path / "journal.jsonl").unsettled()
    assert unsettled == ["recorded-unheard", "unrecorded"]
    assert Journal(tmp_path / "journal.jsonl").done() == {"item-heard": None}
    for session in unsettled:
        book.abandon(session)
    assert book.get("recorded-unheard").state == "discarded"
    assert book.get("heard").state == "pending"
    assert not record_if_kept(client, change("unrecorded", "3" * 40), 60)


def test_changes_of_a_url_repository_land_there_and_count_only_once_pushed(
    client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = ChangeBook(client, 60)
    make_repo(tmp_path / "seed", {"a.txt": "a\n"})
    hosted = tmp_path / "hosted.git"
    git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "seed"), str(hosted))
    url = f"file://{hosted}"
    # a worker's change: a branch pushed to the URL, then recorded
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", url, str(work))
    git(work, "config", "user.email", "dev@example.com")
    git(work, "config", "user.name", "dev")
    (work / "b.txt").write_text("b\n", encoding="utf-8")
    git(work, "add", "b.txt")
    git(work, "commit", "-qm", "b")
    commit = git(work, "rev-parse", "HEAD").strip()
    git(work, "push", "-q", url, "HEAD:refs/heads/toolfleet/changes/c1")
    mark_end(client, "c1", keep=True)
    record_if_kept(client, change("c1", commit, repo=url), 60)
    # the producer's checkout, a clone made before the change: it fetches, merges, pushes
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", url, str(checkout))
    queue = MergeQueue(book, checkout)
    hook = hosted / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)
    monkeypatch.setattr(remote, "REMOTE_PATIENCE", 1.0)
    before = git(checkout, "rev-parse", "main").strip()
    with pytest.raises(GitError):  # the git host refuses the push (tried again): nothing counts
        queue.land(["c1"])
    assert git(checkout, "rev-parse", "main").strip() == before  # put back
    assert book.get("c1").state == "pending"
    hook.unlink()
    done = queue.land(["c1"])
    assert done.applied == ["c1"] and book.get("c1").state == "applied"
    hosted_main = git(hosted, "rev-parse", "main").strip()
    assert git(checkout, "rev-parse", "main").strip() == hosted_main
    assert git(hosted, "merge-base", "--is-ancestor", commit, hosted_main) == ""
    # landed again (a run that stopped after the push, before marking): already there
    book.mark("c1", "pending")
    assert queue.land(["c1"]).already == ["c1"]
    assert git(hosted, "rev-parse", "main").strip() == hosted_main  # not merged twice
