"""Review and apply what sessions and items changed: records in Redis, content in branches."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolfleet.errors import DirtyTarget, GitError, UnknownChange
from toolfleet.gitops import git
from toolfleet.keys import CHANGES_INDEX, RedisLike, change_key, text
from toolfleet.models import Changes

__all__ = ["ApplyResult", "ChangeBook"]


@dataclass
class ApplyResult:
    """What ``apply`` did with each change."""

    applied: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    #: change id -> the files that conflicted (the target branch is untouched)
    conflicts: dict[str, list[str]] = field(default_factory=dict)


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
            git("branch", "--quiet", "-D", record.branch, cwd=repo, check=False)
        self._mark(record, "discarded")
        return record

    def apply(
        self,
        changes: list[str],
        *,
        repo: str | os.PathLike[str] = ".",
        onto: str | None = None,
    ) -> ApplyResult:
        """Merge each change's branch into ``onto`` (default: the branch checked out in
        ``repo``). A conflicting change leaves the target as it was and is listed; a
        target with uncommitted changes is refused (DirtyTarget) before anything."""
        # one git process tells the branch checked out and whether the checkout is clean
        status = git("status", "--porcelain=v2", "--branch", "--untracked-files=no", cwd=repo)
        lines = status.splitlines()
        head = next((ln.split(" ", 2)[2] for ln in lines if ln.startswith("# branch.head ")), "")
        current = "HEAD" if head in ("", "(detached)") else head
        target = onto or current
        records = [self.get(c) for c in changes]
        checkout = Path(repo)
        if target == current:
            if any(not line.startswith("#") for line in lines):
                where = checkout.resolve()
                raise DirtyTarget(f"{where} has uncommitted changes; commit or stash them first")
            return self._merge_all(records, checkout)
        place = Path(tempfile.mkdtemp(prefix="toolfleet-apply-"))
        try:  # another branch: merged in a worktree of its own, the user's checkout untouched
            git("worktree", "add", "--quiet", str(place / "wt"), target, cwd=checkout)
            return self._merge_all(records, place / "wt")
        finally:
            git("worktree", "remove", "--force", str(place / "wt"), cwd=checkout, check=False)
            shutil.rmtree(place, ignore_errors=True)

    def _merge_all(self, records: list[Changes], checkout: Path) -> ApplyResult:
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
