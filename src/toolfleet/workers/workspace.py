"""An instance's git worktree: made at start, reset before each session, its changes
committed on a branch of their own and recorded in Redis when the session ends."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from toolfleet.errors import ConfigError, GitError
from toolfleet.gitops import git, is_url
from toolfleet.keys import CHANGES_INDEX, RedisLike, change_key
from toolfleet.models import Changes
from toolfleet.profiles import Profile

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
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", worker)
        self.root = Path(tempfile.mkdtemp(prefix=f"toolfleet-wt-{safe}-"))
        self.path = self.root / "worktree"
        self.repo = ""
        self.base = ""
        self.base_tree = ""
        self.git_dir: Path | None = None  # the worktree's own git directory

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

    def reset(self) -> None:
        """Back to the base commit: no change, no untracked file, no merge in progress."""
        wt = self.path
        self._abort_unfinished()
        git("checkout", "--quiet", "--force", "--detach", self.base, cwd=wt)
        git("clean", "-fdxq", *(f"--exclude={pattern}" for pattern in self.ignore), cwd=wt)

    def commit(self, change: str) -> Changes:
        """Commit what changed since the reset on ``toolfleet/changes/<change>``.

        Plumbing, not ``git commit``: the index's tree (``write-tree``) becomes a commit
        (``commit-tree``) only if it differs from HEAD's, and one ``git diff`` gives the
        files, the line counts and the patch: five git processes a change, not nine
        (no hooks, no automatic maintenance, no second and third diff)."""
        wt = self.path
        # a merge the tool left in conflict is no change: never commit conflict markers
        self._abort_unfinished()
        git("add", "--all", "--", ".", *(f":(exclude){p}" for p in self.ignore), cwd=wt)
        tree = git("write-tree", cwd=wt).strip()
        # the tool may have committed too (aider's auto-commits): all since the base counts
        head = self._head()
        head_tree = self.base_tree if head == self.base else self._tree(head)
        commit = head
        if tree != head_tree:
            message = f"toolfleet change {change}"
            commit = git("commit-tree", tree, "-p", head, "-m", message, cwd=wt).strip()
        now = time.time()
        branch = change_branch(change)
        files: list[str] = []
        insertions = deletions = 0
        patch = ""
        if commit != self.base:
            files, insertions, deletions, patch = _diff(
                git("diff", "-z", "--numstat", "--patch", self.base, commit, cwd=wt)
            )
        if not files:
            return Changes(
                id=change,
                worker=self.worker,
                repo=self.source,
                branch=branch,
                base=self.base,
                state="empty",
                created_at=now,
            )
        git("branch", "--force", branch, commit, cwd=wt)
        if is_url(self.source):
            git("push", "--quiet", self.source, f"{branch}:{branch}", cwd=wt)
        cut = len(patch.encode()) > MAX_PATCH_BYTES
        if cut:
            patch = patch.encode()[:MAX_PATCH_BYTES].decode(errors="ignore")
        return Changes(
            id=change,
            worker=self.worker,
            repo=self.source,
            branch=branch,
            base=self.base,
            commit=commit,
            files=files,
            insertions=insertions,
            deletions=deletions,
            patch=patch,
            truncated=cut,
            created_at=now,
        )

    def _head(self) -> str:
        """The worktree's HEAD commit: read from its git directory when detached (as
        the reset leaves it), else asked of git (the tool checked out a branch)."""
        if self.git_dir is not None:
            try:
                text = (self.git_dir / "HEAD").read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                text = ""
            if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", text):
                return text
        return git("rev-parse", "HEAD", cwd=self.path).strip()

    def _tree(self, commit: str) -> str:
        return git("rev-parse", f"{commit}^{{tree}}", cwd=self.path).strip()

    def finish(self, change: str, client: RedisLike, ttl: float) -> Changes | None:
        """Commit and record the session's changes (None if that failed: logged)."""
        try:
            record = self.commit(change)
        except (GitError, OSError) as exc:
            log.error("%s: could not commit the changes of %s: %s", self.worker, change, exc)
            return None
        client.set(change_key(change), record.model_dump_json(), px=int(ttl * 1000))
        client.zadd(CHANGES_INDEX, {change: record.created_at})
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
