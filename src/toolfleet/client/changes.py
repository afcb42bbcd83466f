"""Review and apply what sessions and items changed: records in Redis, content in branches."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolfleet.broker.away import ride_out
from toolfleet.ending import FAILED, RECORDED, end_mark, give_up
from toolfleet.errors import ChangeNotRecorded, DirtyTarget, GitError, UnknownChange
from toolfleet.gitops import git, run_git
from toolfleet.keys import CHANGES_INDEX, RedisLike, change_key, health_key, text
from toolfleet.models import Changes

__all__ = ["MERGE_HOOKS", "ApplyResult", "ChangeBook", "target_of"]

#: the hooks ``git merge`` runs when it makes a merge commit: a checkout with any of
#: them gets its merges from ``git merge`` itself, so that they run
MERGE_HOOKS = ("pre-merge-commit", "prepare-commit-msg", "commit-msg", "post-merge")


@dataclass
class ApplyResult:
    """What ``apply`` did with each change."""

    applied: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    #: change id -> the files that conflicted (the target branch is untouched)
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    #: change id -> the tail of the check's output on the merged tree (not applied)
    broken: dict[str, str] = field(default_factory=dict)
    #: change id -> why it was not taken (rejected by its check; see ``force``)
    refused: dict[str, str] = field(default_factory=dict)
    #: changes the target holds already (an apply resumed after a stop)
    already: list[str] = field(default_factory=list)

    def add(self, other: ApplyResult) -> None:
        """Count what ``other`` did too (after what this one did)."""
        self.applied += other.applied
        self.empty += other.empty
        self.conflicts.update(other.conflicts)
        self.broken.update(other.broken)
        self.refused.update(other.refused)
        self.already += other.already

    def take_ready(self, records: list[Changes], force: bool) -> list[Changes]:
        """``records`` but those their check rejected, listed in ``refused`` (all of
        them with ``force``)."""
        if force:
            return records
        for record in records:
            if record.state == "rejected":
                self.refused[record.id] = "rejected by its check (--force takes it)"
        return [r for r in records if r.state != "rejected"]

    @property
    def redo(self) -> list[str]:
        """Changes to make again on the target's new tip: conflicting, or broken once merged."""
        return [*self.conflicts, *self.broken]


class ChangeBook:
    """The fleet's change records (``fleet.changes``)."""

    def __init__(self, client: RedisLike, ttl: float) -> None:
        self.client = client
        self.ttl = ttl

    def get(self, change: str) -> Changes:
        raw = self.client.get(change_key(change))
        if raw is None:
            raise UnknownChange(f"no change {change!r} (see toolfleet changes list)")
        return Changes.model_validate_json(raw)

    def wait(self, change: str, timeout: float = 10.0) -> Changes | None:
        """The record of ``change`` once its worker has written it (None after ``timeout``)."""
        end = time.monotonic() + timeout
        pause = 0.005  # the worker commits in tens of milliseconds: look soon, then less
        while True:
            try:
                return self.get(change)
            except UnknownChange:
                if time.monotonic() >= end:
                    return None
                time.sleep(pause)
                pause = min(0.05, pause * 1.5)

    def settle(self, change: str, worker: str, timeout: float = 900.0) -> Changes:
        """The record of ``change`` (a session closed with keep), once its worker
        ``worker`` wrote it. ChangeNotRecorded if the worker could not commit or push
        it, or its health record went away (frozen, cut off, dead) or ``timeout`` passed
        first: the session is then given up, and a worker that comes back later does
        not record it (:mod:`toolfleet.ending`)."""
        end = time.monotonic() + timeout
        pause = 0.005
        what = f"change {change}"
        while True:  # every look is a read, repeated through a failover
            mark = ride_out(lambda: end_mark(self.client, change), what)
            if mark == RECORDED:
                return ride_out(lambda: self.get(change), what)
            if mark is not None and mark.startswith(FAILED):
                raise ChangeNotRecorded(f"change {change}: {mark[len(FAILED) :]}")
            gone = not ride_out(lambda: self.client.exists(health_key(worker)), what)
            if gone or time.monotonic() >= end:
                mark = ride_out(lambda: give_up(self.client, change), what)
                if mark == RECORDED:
                    return ride_out(lambda: self.get(change), what)
                why = f"{worker} went away" if gone else f"no record after {timeout:g} s"
                raise ChangeNotRecorded(f"change {change} was not recorded ({why})")
            time.sleep(pause)
            pause = min(0.1, pause * 1.5)

    def abandon(self, session: str) -> None:
        """Give up ``session``, which a stopped run closed to keep but never saw settle:
        its worker will not record its change, or the change it recorded is discarded
        (its item runs again). Nothing if the change was applied meanwhile."""
        if give_up(self.client, session) != RECORDED:
            return
        try:
            record = self.get(session)
        except UnknownChange:
            return
        if record.state in ("pending", "ready"):
            self._mark(record, "discarded")

    def records(self, pending: bool = False) -> list[Changes]:
        """Every live change record, oldest first (only the pending ones with ``pending``)."""
        ids = [text(i) for i in self.client.zrange(CHANGES_INDEX, 0, -1)]
        records = []
        for raw in self.client.mget([change_key(i) for i in ids]) if ids else []:
            if raw is not None:
                records.append(Changes.model_validate_json(raw))
        return [r for r in records if r.state == "pending"] if pending else records

    def _mark(self, record: Changes, state: str) -> None:
        updated = record.model_copy(update={"state": state})
        self.client.set(change_key(record.id), updated.model_dump_json(), px=int(self.ttl * 1000))

    def discard(self, change: str, repo: str | os.PathLike[str] = ".") -> Changes:
        """Forget ``change``: its branch is deleted, its record marked discarded."""
        record = self.get(change)
        if record.commit is not None:
            git("branch", "--quiet", "-D", "--", record.branch, cwd=repo, check=False)
        self._mark(record, "discarded")
        return record

    def mark(self, change: str, state: str) -> None:
        """Record that ``change`` is now in ``state`` (e.g. ``applied``)."""
        self._mark(self.get(change), state)

    def apply(
        self,
        changes: list[str],
        *,
        repo: str | os.PathLike[str] = ".",
        onto: str | None = None,
        force: bool = False,
    ) -> ApplyResult:
        """Merge each change's branch into ``onto`` (default: the branch checked out in
        ``repo``). A conflicting change leaves the target as it was and is listed; a
        target with uncommitted changes is refused (DirtyTarget) before anything. A
        change its check rejected is not taken (``refused``) unless ``force``."""
        target, current = target_of(repo, onto)
        return self.apply_to([self.get(c) for c in changes], repo, target, current, force=force)

    def apply_to(
        self,
        records: list[Changes],
        repo: str | os.PathLike[str],
        target: str,
        current: str,
        *,
        force: bool = False,
    ) -> ApplyResult:
        """:meth:`apply` of ``records`` onto ``target`` of ``repo``, whose checkout has
        ``current`` checked out (both from :func:`target_of`)."""
        done = ApplyResult()
        records = done.take_ready(records, force)
        checkout = Path(repo)
        if target == current:
            done.add(self._merge_all(records, checkout))
            return done
        place = Path(tempfile.mkdtemp(prefix="toolfleet-apply-"))
        try:  # another branch: merged in a worktree of its own, the user's checkout untouched
            git("worktree", "add", "--quiet", str(place / "wt"), target, cwd=checkout)
            done.add(self._merge_all(records, place / "wt"))
            return done
        finally:
            git("worktree", "remove", "--force", str(place / "wt"), cwd=checkout, check=False)
            shutil.rmtree(place, ignore_errors=True)

    def _merge_all(self, records: list[Changes], checkout: Path) -> ApplyResult:
        """Merge ``records``' branches, in order, into the branch checked out in
        ``checkout`` (clean): each a merge commit of its own, a conflicting one left out.

        The merges are made in git's object store (``merge-tree --write-tree``, then
        ``commit-tree``) and the checkout moved once, by a fast-forward to the last: two
        small git processes a change and one a batch, where ``git merge`` takes three
        processes a change and rewrites the checkout each time. A checkout with merge
        hooks (``MERGE_HOOKS``) or no commit yet, and a git older than 2.38 (no
        ``merge-tree --write-tree``), get their merges from ``git merge``."""
        where = run_git("rev-parse", "--git-path", "hooks", "HEAD", "HEAD^{tree}", cwd=checkout)
        hooks, head, tree = [*where.stdout.splitlines(), "", "", ""][:3]
        hooked = any(os.access(checkout / hooks / name, os.X_OK) for name in MERGE_HOOKS)
        if where.returncode != 0 or hooked or not tree:
            return self._merge_each(records, checkout)
        result = ApplyResult()
        merged: list[Changes] = []
        start, rest = head, list(records)
        while rest:
            record = rest[0]
            if record.commit is None:
                result.empty.append(rest.pop(0).id)
                continue
            args = ("merge-tree", "--write-tree", "--name-only", "--no-messages", head)
            done = run_git(*args, record.branch, cwd=checkout)
            lines = done.stdout.splitlines()
            if done.returncode not in (0, 1) or not lines:
                break  # an old git, or an error git merge will name: the rest by git merge
            rest.pop(0)
            if done.returncode == 1:  # conflicts: the files come after the tree
                result.conflicts[record.id] = sorted({name for name in lines[1:] if name})
                continue
            if lines[0] != tree:  # the same tree: the change is in the target already
                tree = lines[0]
                message = f"toolfleet: apply change {record.id}"
                parents = ("-p", head, "-p", record.branch)
                head = git("commit-tree", tree, *parents, "-m", message, cwd=checkout).strip()
            merged.append(record)
        if head != start:
            git("merge", "--ff-only", "--quiet", head, cwd=checkout)
        for record in merged:
            self._mark(record, "applied")
            result.applied.append(record.id)
        if rest:
            result.add(self._merge_each(rest, checkout))
        return result

    def _merge_each(self, records: list[Changes], checkout: Path) -> ApplyResult:
        """``git merge`` a branch at a time (its hooks run)."""
        result = ApplyResult()
        for record in records:
            if record.commit is None:
                result.empty.append(record.id)
                continue
            try:
                git(
                    "merge",
                    "--no-ff",
                    "--quiet",
                    "-m",
                    f"toolfleet: apply change {record.id}",
                    "--",
                    record.branch,
                    cwd=checkout,
                )
            except GitError:
                files = git("diff", "--name-only", "--diff-filter=U", cwd=checkout).split()
                git("merge", "--abort", cwd=checkout, check=False)
                result.conflicts[record.id] = files
                continue
            self._mark(record, "applied")
            result.applied.append(record.id)
        return result


def target_of(repo: str | os.PathLike[str], onto: str | None) -> tuple[str, str]:
    """The branch to apply to (``onto``, else the one checked out in ``repo``) and the
    one checked out there ("HEAD" when detached), in one git process; DirtyTarget when
    the target is the one checked out and the checkout has uncommitted changes."""
    status = git("status", "--porcelain=v2", "--branch", "--untracked-files=no", cwd=repo)
    lines = status.splitlines()
    head = next((ln.split(" ", 2)[2] for ln in lines if ln.startswith("# branch.head ")), "")
    current = "HEAD" if head in ("", "(detached)") else head
    target = onto or current
    if target == current and any(not line.startswith("#") for line in lines):
        where = Path(repo).resolve()
        raise DirtyTarget(f"{where} has uncommitted changes; commit or stash them first")
    return target, current
