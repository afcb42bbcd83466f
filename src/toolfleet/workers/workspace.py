"""An instance's git worktree: made at start, reset before each session (to the base, or
to a commit the session names), checked on demand, its changes committed as one commit
on a branch of their own and recorded in Redis when the session ends."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from toolfleet.checks import run_check
from toolfleet.client.remote import REMOTE_PATIENCE, retried
from toolfleet.ending import fail_if_kept, record_if_kept
from toolfleet.errors import ConfigError, GitError
from toolfleet.gitops import git, is_url
from toolfleet.keys import RedisLike
from toolfleet.models import Changes, CheckResult
from toolfleet.profiles import Profile
from toolfleet.tool.sandbox import SandboxPolicy

__all__ = ["MAX_PATCH_BYTES", "Worktree", "change_branch"]

log = logging.getLogger(__name__)

#: the patch kept in a change record (the branch holds all of it)
MAX_PATCH_BYTES = 64 * 1024


def change_branch(change: str) -> str:
    """The branch holding change ``change``."""
    return f"toolfleet/changes/{change}"


class Worktree:
    """One instance's worktree of ``profile.repo`` (a local path, or a URL cloned once),
    detached at the base commit, never the user's checkout or branches."""

    def __init__(self, profile: Profile, worker: str) -> None:
        self.worker = worker
        self.source = profile.repository() or profile.cwd or os.getcwd()
        self.base_ref = profile.base or "HEAD"
        self.ignore = list(profile.workspace_ignore)
        self.push_patience = REMOTE_PATIENCE
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", worker)
        self.root = Path(tempfile.mkdtemp(prefix=f"toolfleet-wt-{safe}-"))
        self.path = self.root / "worktree"
        self.repo = ""
        self.base = ""
        self.base_tree = ""
        self.git_dir: Path | None = None  # the worktree's own git directory
        #: the session's base (the base, or the commit its producer named), and its tree
        self.session_base = ""
        self.session_base_tree = ""
        #: the session's last check (on the tree it names) and the repair turns before it
        self.checked: CheckResult | None = None
        self.repairs = 0

    def prepare(self) -> None:
        """Make the worktree at the base commit; ConfigError says why it cannot be."""
        try:
            if is_url(self.source):
                self.repo = str(self.root / "clone.git")
                git("clone", "--bare", "--quiet", self.source, self.repo, cwd=self.root)
            else:
                self.repo = git("rev-parse", "--show-toplevel", cwd=self.source).strip()
        except (GitError, OSError) as exc:
            raise ConfigError(
                f"workspace 'worktree': {self.source} is no git repository ({exc})"
            ) from None
        try:
            self.base = git("rev-parse", "--verify", f"{self.base_ref}^{{commit}}", cwd=self.repo)
        except GitError:
            raise ConfigError(
                f"workspace 'worktree': base {self.base_ref!r} is no commit of {self.source}"
            ) from None
        self.base = self.base.strip()
        # detached at the base: no branch of its own, so that nothing stops a worker of
        # the same name from starting again after a kill, and no `worktree prune` (which
        # would drop the worktrees of workers on other machines sharing the repository)
        git("worktree", "add", "--quiet", "--detach", str(self.path), self.base, cwd=self.repo)
        # its git directory and the base's tree (HEAD is the base there) in one process
        git_dir, self.base_tree = git(
            "rev-parse", "--absolute-git-dir", "HEAD^{tree}", cwd=self.path
        ).splitlines()
        self.git_dir = Path(git_dir)
        self.session_base, self.session_base_tree = self.base, self.base_tree

    def _abort_unfinished(self) -> None:
        """Abort a merge, rebase or cherry-pick the tool left half-done (conflicts): the
        state files git keeps for them say which (no git process when there is none)."""
        signs = {
            "merge": ("MERGE_HEAD",),
            "rebase": ("rebase-merge", "rebase-apply"),
            "cherry-pick": ("CHERRY_PICK_HEAD", "sequencer"),
        }
        for command, names in signs.items():
            if self.git_dir is None or any((self.git_dir / n).exists() for n in names):
                git(command, "--abort", cwd=self.path, check=False)

    def reset(self, base: str | None = None) -> None:
        """Back to the base commit (or to ``base``, a commit of the repository: a change
        redone on a branch that moved): no change, no untracked file, no merge going on."""
        wt = self.path
        self._abort_unfinished()
        start, tree = self.base, self.base_tree
        if base and base != self.base:
            start = self._commit_of(base)
            tree = self._tree(start)
        git("checkout", "--quiet", "--force", "--detach", start, cwd=wt)
        git("clean", "-fdxq", *(f"--exclude={pattern}" for pattern in self.ignore), cwd=wt)
        self.session_base, self.session_base_tree = start, tree
        self.checked, self.repairs = None, 0

    def _commit_of(self, base: str) -> str:
        """The commit ``base`` names, fetched first from a repository given by URL."""
        if not re.fullmatch(r"[0-9a-f]{7,64}", base):
            raise GitError(f"base {base!r} is no commit id")
        found = git(
            "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", cwd=self.path, check=False
        )
        if not found.strip() and is_url(self.source):
            git("fetch", "--quiet", self.source, "+refs/heads/*:refs/heads/*", cwd=self.repo)
            found = git(
                "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", cwd=self.path, check=False
            )
        if not found.strip():
            raise GitError(f"base {base} is no commit of {self.source}")
        return found.strip()

    def _stage(self) -> str:
        """Everything in the worktree (but ``workspace_ignore``) staged; its tree."""
        wt = self.path
        git("add", "--all", "--", ".", *(f":(exclude){p}" for p in self.ignore), cwd=wt)
        return git("write-tree", cwd=wt).strip()

    def check(
        self,
        command: str,
        *,
        timeout: float,
        turn: int = 0,
        sandbox: tuple[str, SandboxPolicy] | None = None,
        passed_env: tuple[str, ...] = (),
    ) -> CheckResult:
        """Run the session's check ``command`` in the worktree as it is now (after
        ``turn`` repair turns); the result, kept for the change record with its tree."""
        self._abort_unfinished()
        tree = self._stage()
        result = run_check(
            command, str(self.path), timeout=timeout, sandbox=sandbox, passed_env=passed_env
        )
        result = result.model_copy(update={"tree": tree})
        self.checked, self.repairs = result, turn
        self._restore(tree)
        return result

    def _restore(self, tree: str) -> None:
        """The worktree as ``tree`` (what was staged before the check): what the check
        wrote (caches, builds; files git does not ignore) is never part of the change."""
        wt = self.path
        git("read-tree", tree, cwd=wt)
        git("checkout-index", "--all", "--force", cwd=wt)
        git("clean", "-fdq", *(f"--exclude={pattern}" for pattern in self.ignore), cwd=wt)

    def commit(self, change: str) -> Changes:
        """Commit what changed since the reset on ``toolfleet/changes/<change>``: ONE
        commit on the session's base, whatever the tool committed meanwhile (aider's
        auto-commits of a first answer its check then failed never reach a branch).

        Plumbing, not ``git commit``: the index's tree (``write-tree``) becomes a commit
        (``commit-tree``) only if it differs from the base's, and one ``git diff`` gives
        the files, the line counts and the patch (no hooks, no automatic maintenance).
        A check that ran on this very tree decides the state: ``ready`` or ``rejected``;
        without one (or after further edits) the change is ``pending``."""
        wt = self.path
        # a merge the tool left in conflict is no change: never commit conflict markers
        self._abort_unfinished()
        tree = self._stage()
        base = self.session_base or self.base
        commit = base
        if tree != (self.session_base_tree or self.base_tree):
            message = f"toolfleet change {change}"
            commit = git("commit-tree", tree, "-p", base, "-m", message, cwd=wt).strip()
        now = time.time()
        branch = change_branch(change)
        files: list[str] = []
        insertions = deletions = 0
        patch = ""
        if commit != base:
            files, insertions, deletions, patch = _diff(
                git("diff", "-z", "--numstat", "--patch", base, commit, cwd=wt)
            )
        checked = self.checked if self.checked is not None and self.checked.tree == tree else None
        if not files:
            return Changes(
                id=change,
                worker=self.worker,
                repo=self.source,
                branch=branch,
                base=base,
                state="empty",
                check=checked,
                repairs=self.repairs,
                created_at=now,
            )
        git("branch", "--force", branch, commit, cwd=wt)
        if is_url(self.source):
            self._push(branch)
        cut = len(patch.encode()) > MAX_PATCH_BYTES
        if cut:
            patch = patch.encode()[:MAX_PATCH_BYTES].decode(errors="ignore")
        state = "pending" if checked is None else ("ready" if checked.passed else "rejected")
        return Changes(
            id=change,
            worker=self.worker,
            repo=self.source,
            branch=branch,
            base=base,
            commit=commit,
            files=files,
            insertions=insertions,
            deletions=deletions,
            patch=patch,
            truncated=cut,
            state=state,
            check=checked,
            repairs=self.repairs,
            created_at=now,
        )

    def _push(self, branch: str) -> None:
        """Push ``branch`` to the repository's URL, tried again for up to
        ``push_patience`` s (the git host down or cut off for a while): a change is
        recorded only once its commit is on the git host."""
        retried(
            f"{self.worker}: push of {branch}",
            lambda: git("push", "--quiet", self.source, f"{branch}:{branch}", cwd=self.path),
            self.push_patience,
        )

    def _unpush(self, branch: str) -> None:
        """Take a change branch that will not be recorded away again (here and on the
        repository's URL): nobody is to find a change nobody wants."""
        git("branch", "--quiet", "-D", "--", branch, cwd=self.path, check=False)
        if is_url(self.source):
            git("push", "--quiet", self.source, f":{branch}", cwd=self.path, check=False)

    def _tree(self, commit: str) -> str:
        return git("rev-parse", f"{commit}^{{tree}}", cwd=self.path).strip()

    def finish(self, change: str, client: RedisLike, ttl: float) -> Changes | None:
        """Commit and record the session's changes, if its producer still wants them (see
        :mod:`toolfleet.ending`); None if it did not, or committing failed (the
        producer is told why)."""
        try:
            record = self.commit(change)
        except (GitError, OSError) as exc:
            log.error("%s: could not commit the changes of %s: %s", self.worker, change, exc)
            fail_if_kept(client, change, f"{type(exc).__name__}: {exc}")
            return None
        if not record_if_kept(client, record, ttl):
            log.warning(
                "%s: the producer of %s gave up on it meanwhile: its change is not recorded",
                self.worker,
                change,
            )
            if record.commit is not None:
                self._unpush(record.branch)
            return None
        log.info(
            "%s: changes of %s: %d file(s) on %s",
            self.worker,
            change,
            len(record.files),
            record.branch,
        )
        return record

    def remove(self) -> None:
        """Take the worktree and its directory away (the change branches stay)."""
        git(
            "worktree", "remove", "--force", str(self.path), cwd=self.repo or self.root, check=False
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _diff(out: str) -> tuple[list[str], int, int, str]:
    """Files (sorted), insertions, deletions and the patch of ``git diff -z --numstat
    --patch``: NUL-ended numstat records (a rename's record is followed by its old and
    new names), an empty record, then the patch."""
    stat, _, patch = out.partition("\0\0")
    fields = stat.split("\0")
    files: list[str] = []
    insertions = deletions = 0
    i = 0
    while i < len(fields):
        record = fields[i]
        i += 1
        if not record:
            continue
        added, removed, path = record.split("\t", 2)
        if not path:  # a rename: its old name, then its new name
            path = fields[i + 1] if i + 1 < len(fields) else fields[i]
            i += 2
        files.append(path)
        insertions += int(added) if added.isdigit() else 0
        deletions += int(removed) if removed.isdigit() else 0
    return sorted(files), insertions, deletions, patch
