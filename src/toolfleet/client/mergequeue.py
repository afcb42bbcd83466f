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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolfleet.checks import default_sandbox, run_check
from toolfleet.client.changes import ApplyResult, ChangeBook, target_of
from toolfleet.client.remote import fetch_for_landing, push_target
from toolfleet.errors import GitError, ToolfleetError
from toolfleet.gitops import git, is_url, run_git
from toolfleet.models import Changes

__all__ = ["APPLY_LOCK_PREFIX", "MergeQueue"]

#: the Redis lock of one target branch: ``<prefix><digest of repository and branch>``
APPLY_LOCK_PREFIX = "toolfleet:apply:"
#: the lock's life: renewed every third of it while held, so that the lock of an
#: applier that died frees its branch this soon
LOCK_TTL = 20.0


@dataclass(frozen=True)
class _Target:
    """Where a train lands: the branch's ref, the scratch worktree its checks run in,
    and whether the branch is the one checked out in the user's checkout."""

    ref: str
    tree_dir: Path
    checked_out: bool


class MergeQueue:
    """Lands changes on ``onto`` (default: the branch checked out in ``repo``).

    Without ``check`` it merges as :meth:`ChangeBook.apply` does, under the lock. With
    ``check`` (a shell command; ``checks`` may give a change its own, e.g. with its
    item's ``{path}`` filled in) the changes given together land as a train: merged in
    turn onto the current tip in git's object store, the merged tree checked out in a
    scratch worktree and checked there (confined: :func:`default_sandbox`), and the
    branch moved to one merge commit of them only if the check passed (bors' rule: the
    branch never holds a commit that failed); a failing train is bisected. A change
    that conflicts or breaks the check is listed (``conflicts``, ``broken``: ``redo``);
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
        """Land ``changes`` in order; what became of each. Changes of a repository given
        by URL land on that repository's branch (:meth:`_land_remote`)."""
        target, current = target_of(self.repo, self.onto)
        records = [self.book.get(change) for change in changes]
        url = next((r.repo for r in records if is_url(r.repo)), None)
        with self._locked(target, url):
            if url is not None:
                return self._land_remote(records, url, target, current)
            if self.check is None and not self.checks:
                return self.book.apply_to(records, self.repo, target, current, force=self.force)
            result = ApplyResult()
            try:
                self._land_checked(records, target, target == current, result)
            finally:  # what landed before a failure is marked too
                self._mark_landed(result)
            return result

    def _land_remote(
        self, records: list[Changes], url: str, target: str, current: str
    ) -> ApplyResult:
        """Land on ``url``'s ``target``: the checkout's branch brought up to the git
        host's, the changes merged (checked, with a check) as a train, the branch pushed
        back; only then are they marked applied. A push that fails for good puts the
        branch back where the git host has it (GitError): nothing is marked applied that
        the git host does not hold, and a later landing finds the change still to do."""
        if target == "HEAD":
            raise GitError(f"changes of {url} land on a branch: check one out (or --onto)")
        checked_out = target == current
        fetch_for_landing(self.repo, url, target, records, checked_out)
        tip = git("rev-parse", f"refs/heads/{target}", cwd=self.repo).strip()
        result = ApplyResult()
        self._land_checked(records, target, checked_out, result)
        if git("rev-parse", f"refs/heads/{target}", cwd=self.repo).strip() != tip:
            try:
                push_target(self.repo, url, target)
            except ToolfleetError:
                if checked_out:
                    git("reset", "--quiet", "--keep", tip, cwd=self.repo)
                else:
                    git("update-ref", f"refs/heads/{target}", tip, cwd=self.repo)
                raise
        self._mark_landed(result)
        return result

    @contextmanager
    def _locked(self, target: str, url: str | None = None) -> Iterator[None]:
        """Hold the target branch's lock (waiting up to ``lock_wait`` s for another
        applier), renewed while held; it expires :data:`LOCK_TTL` s after its holder
        died. A repository given by URL has one lock a branch whichever host lands."""
        common = git("rev-parse", "--git-common-dir", cwd=self.repo).strip()
        where = url or os.path.realpath(self.repo / common)
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

    def _land_checked(
        self, records: list[Changes], target: str, checked_out: bool, result: ApplyResult
    ) -> None:
        """Land ``records`` on ``target`` as trains (:meth:`_train`), into ``result``;
        the caller marks what landed (:meth:`_mark_landed`)."""
        scratch = Path(tempfile.mkdtemp(prefix="toolfleet-queue-"))
        tree_dir = scratch / "wt"
        ref = f"refs/heads/{target}" if target != "HEAD" else "HEAD"
        git("worktree", "add", "--quiet", "--detach", str(tree_dir), ref, cwd=self.repo)
        try:
            tip = git("rev-parse", ref, cwd=self.repo).strip()
            ready = result.take_ready(records, self.force)
            waiting = [r for r in ready if self._admit(r, tip, result)]
            self._train(waiting, _Target(ref, tree_dir, checked_out), result)
        finally:
            git("worktree", "remove", "--force", str(tree_dir), cwd=self.repo, check=False)
            shutil.rmtree(scratch, ignore_errors=True)

    def _admit(self, record: Changes, tip: str, result: ApplyResult) -> bool:
        """Whether ``record`` is to be merged onto ``tip``: not empty, not on the branch
        already (landed by a run that stopped before marking)."""
        if record.commit is None:
            result.empty.append(record.id)
            return False
        ancestor = run_git("merge-base", "--is-ancestor", record.commit, tip, cwd=self.repo)
        if ancestor.returncode == 0:
            result.already.append(record.id)
            return False
        return True

    def _train(self, records: list[Changes], target: _Target, result: ApplyResult) -> None:
        """Land ``records`` as one train (GitLab's merge trains): merged in turn onto the
        tip in git's object store (a conflicting one left out, listed), the merged tree
        checked once, and the branch moved to ONE merge commit of them all, so that
        every commit the branch holds was checked. A train whose check fails is split
        in halves, each landed in turn on the tip then; a change failing alone is
        ``broken``."""
        if not records:
            return
        ref = target.ref
        tip, tip_tree = git("rev-parse", ref, f"{ref}^{{tree}}", cwd=self.repo).split()
        head, tree = tip, tip_tree
        taken: list[Changes] = []
        later: list[Changes] = []
        for record in records:
            args = ("merge-tree", "--write-tree", "--name-only", "--no-messages", head)
            merged = run_git(*args, record.commit or "", cwd=self.repo)
            lines = merged.stdout.splitlines()
            if merged.returncode == 1:
                result.conflicts[record.id] = sorted({name for name in lines[1:] if name})
            elif merged.returncode != 0 or not lines:
                result.conflicts[record.id] = [f"git merge-tree: {merged.stderr.strip()}"]
            elif lines[0] == tree and head == tip:  # its content is there already
                result.already.append(record.id)
            elif lines[0] == tree:  # the same as the train's so far: after the train
                later.append(record)
            else:
                tree = lines[0]
                parents = ("-p", head, "-p", record.commit or "")
                head = git("commit-tree", tree, *parents, "-m", "train", cwd=self.repo).strip()
                taken.append(record)
        if taken:
            commit = self._merge_commit(tip, tree, taken)
            failed = self._checked(commit, taken, target.tree_dir)
            if failed is None:
                self._move(target, commit, tip)
                result.applied += [record.id for record in taken]
            elif len(taken) == 1:
                result.broken[taken[0].id] = failed
            else:
                half = len(taken) // 2
                self._train(taken[:half], target, result)
                self._train(taken[half:], target, result)
        self._train(later, target, result)

    def _merge_commit(self, tip: str, tree: str, taken: list[Changes]) -> str:
        """The commit of ``tree`` whose parents are the tip and each change's commit."""
        parents = ["-p", tip]
        for record in taken:
            parents += ["-p", record.commit or ""]
        if len(taken) == 1:
            message = f"toolfleet: apply change {taken[0].id}"
        else:
            ids = "\n".join(r.id for r in taken)
            message = f"toolfleet: apply {len(taken)} changes\n\n{ids}"
        return git("commit-tree", tree, *parents, "-m", message, cwd=self.repo).strip()

    def _checked(self, commit: str, taken: list[Changes], tree_dir: Path) -> str | None:
        """Run the checks of ``taken`` (each distinct command once) on ``commit``'s tree;
        None if all passed, else the failing one's output."""
        commands = dict.fromkeys(
            c for r in taken if (c := self.checks.get(r.id, self.check)) is not None
        )
        if not commands:
            return None
        git("checkout", "--quiet", "--force", "--detach", commit, cwd=tree_dir)
        git("clean", "-fdxq", cwd=tree_dir)
        for command in commands:
            checked = run_check(
                command, str(tree_dir), timeout=self.check_timeout, sandbox=default_sandbox()
            )
            if not checked.passed:
                return checked.output
        return None

    def _move(self, target: _Target, commit: str, tip: str) -> None:
        """The branch to ``commit``: the user's checkout follows (its working tree too),
        another branch only if nobody moved it meanwhile."""
        if target.checked_out:
            git("merge", "--ff-only", "--quiet", commit, cwd=self.repo)
        else:
            git("update-ref", target.ref, commit, tip, cwd=self.repo)

    def _mark_landed(self, result: ApplyResult) -> None:
        """Mark the changes ``result`` landed, or found on the branch already, applied."""
        for change in [*result.applied, *result.already]:
            self.book.mark(change, "applied")


def _renew(lock: Any, released: threading.Event) -> None:
    """Renew ``lock`` every third of its life until ``released`` (Redis away for a
    moment: the next renewal may still make it)."""
    while not released.wait(LOCK_TTL / 3):
        with contextlib.suppress(Exception):
            lock.reacquire()
