"""The merge queue: changes land on a target branch one at a time, each merged onto the
current tip and, with a check, checked on the merged tree before the branch moves; one
applier per target branch, fleet-wide (a Redis lock)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from toolfleet.checks import default_sandbox, run_check
from toolfleet.client.changes import ApplyResult, ChangeBook, target_of
from toolfleet.errors import DirtyTarget, ToolfleetError
from toolfleet.gitops import git, run_git
from toolfleet.models import Changes

__all__ = ["APPLY_LOCK_PREFIX", "MergeQueue"]

#: the Redis lock of one target branch: ``<prefix><digest of repository and branch>``
APPLY_LOCK_PREFIX = "toolfleet:apply:"
#: the lock's life: renewed every third of it while held, so that the lock of an
#: applier that died frees its branch this soon
LOCK_TTL = 20.0


class MergeQueue:
    """Lands changes on ``onto`` (default: the branch checked out in ``repo``).

    Without ``check`` it merges as :meth:`ChangeBook.apply` does, under the lock. With
    ``check`` (a shell command; ``checks`` may give a change its own, e.g. with its
    item's ``{path}`` filled in) each change is merged onto the current tip in git's
    object store, the merged tree checked out in a scratch worktree and checked there
    (confined: :func:`default_sandbox`), and the branch moved only if the check passed
    (bors' rule: the branch never holds a commit that failed). A change that
    conflicts or breaks the check is listed (``conflicts``, ``broken``: ``redo``);
    a change the target holds already is listed in ``already``, never merged twice.
    """

    def __init__(
        self,
        book: ChangeBook,
        repo: str | os.PathLike[str] = ".",
        onto: str | None = None,
        *,
        check: str | None = None,
        check_timeout: float = 600.0,
        checks: Mapping[str, str] | None = None,
        force: bool = False,
        lock_wait: float = 3600.0,
    ) -> None:
        self.book = book
        self.repo = Path(repo)
        self.onto = onto
        self.check = check
        self.check_timeout = check_timeout
        self.checks = checks if checks is not None else {}  # filled as changes come
        self.force = force
        self.lock_wait = lock_wait

    def land(self, changes: list[str]) -> ApplyResult:
        """Land ``changes`` in order; what became of each."""
        target, current, dirty = target_of(self.repo, self.onto)
        if target == current and dirty:
            where = self.repo.resolve()
            raise DirtyTarget(f"{where} has uncommitted changes; commit or stash them first")
        with self._locked(target):
            if self.check is None and not self.checks:
                return self.book.apply(changes, repo=self.repo, onto=self.onto, force=self.force)
            return self._land_checked(changes, target, checked_out=target == current)

    @contextmanager
    def _locked(self, target: str) -> Iterator[None]:
        """Hold the target branch's lock (waiting up to ``lock_wait`` s for another
        applier), renewed while held; it expires :data:`LOCK_TTL` s after its holder
        died."""
        common = git("rev-parse", "--git-common-dir", cwd=self.repo).strip()
        where = os.path.realpath(self.repo / common)
        digest = hashlib.sha256(f"{where}\0{target}".encode()).hexdigest()[:24]
        lock = self.book.client.lock(
            APPLY_LOCK_PREFIX + digest,
            timeout=LOCK_TTL,
            blocking_timeout=self.lock_wait,
            thread_local=False,
        )
        if not lock.acquire():
            raise ToolfleetError(f"another applier held {target} for {self.lock_wait:g} s")
        held = threading.Event()
        renewer = threading.Thread(
            target=_renew, args=(lock, held), name="toolfleet-apply-lock", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            held.set()
            renewer.join()
            with contextlib.suppress(Exception):  # expired meanwhile: nothing to release
                lock.release()

    def _land_checked(self, changes: list[str], target: str, checked_out: bool) -> ApplyResult:
        result = ApplyResult()
        scratch = Path(tempfile.mkdtemp(prefix="toolfleet-queue-"))
        tree_dir = scratch / "wt"
        ref = f"refs/heads/{target}" if target != "HEAD" else "HEAD"
        git("worktree", "add", "--quiet", "--detach", str(tree_dir), ref, cwd=self.repo)
        try:
            for change in changes:
                record = self.book.get(change)
                self._land_one(record, ref, tree_dir, checked_out, result)
        finally:
            git("worktree", "remove", "--force", str(tree_dir), cwd=self.repo, check=False)
            shutil.rmtree(scratch, ignore_errors=True)
        return result

    def _land_one(
        self, record: Changes, ref: str, tree_dir: Path, checked_out: bool, result: ApplyResult
    ) -> None:
        if record.state == "rejected" and not self.force:
            result.refused[record.id] = "rejected by its check (--force takes it)"
            return
        if record.commit is None:
            result.empty.append(record.id)
            return
        tip, tip_tree = git("rev-parse", ref, f"{ref}^{{tree}}", cwd=self.repo).split()
        ancestor = run_git("merge-base", "--is-ancestor", record.commit, tip, cwd=self.repo)
        if ancestor.returncode == 0:  # landed by an earlier run that stopped before marking
            self._landed(record, result.already)
            return
        args = ("merge-tree", "--write-tree", "--name-only", "--no-messages", tip, record.commit)
        merged = run_git(*args, cwd=self.repo)
        lines = merged.stdout.splitlines()
        if merged.returncode == 1:
            result.conflicts[record.id] = sorted({name for name in lines[1:] if name})
            return
        if merged.returncode != 0 or not lines:
            result.conflicts[record.id] = [f"git merge-tree: {merged.stderr.strip()}"]
            return
        if lines[0] == tip_tree:  # its content is there already
            self._landed(record, result.already)
            return
        message = f"toolfleet: apply change {record.id}"
        parents = ("-p", tip, "-p", record.commit)
        commit = git("commit-tree", lines[0], *parents, "-m", message, cwd=self.repo).strip()
        git("checkout", "--quiet", "--force", "--detach", commit, cwd=tree_dir)
        git("clean", "-fdxq", cwd=tree_dir)
        command = self.checks.get(record.id, self.check)
        if command:
            checked = run_check(
                command, str(tree_dir), timeout=self.check_timeout, sandbox=default_sandbox()
            )
            if not checked.passed:
                result.broken[record.id] = checked.output
                return
        if checked_out:  # the user's checkout follows (the working tree too)
            git("merge", "--ff-only", "--quiet", commit, cwd=self.repo)
        else:  # only if nobody moved it meanwhile
            git("update-ref", ref, commit, tip, cwd=self.repo)
        self._landed(record, result.applied)

    def _landed(self, record: Changes, into: list[str]) -> None:
        self.book.mark(record.id, "applied")
        into.append(record.id)


def _renew(lock: Any, released: threading.Event) -> None:
    """Renew ``lock`` every third of its life until ``released`` (Redis away for a
    moment: the next renewal may still make it)."""
    while not released.wait(LOCK_TTL / 3):
        with contextlib.suppress(Exception):
            lock.reacquire()
