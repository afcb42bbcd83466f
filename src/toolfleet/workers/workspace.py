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
        git_dir = Path(git("rev-parse", "--git-dir", cwd=self.path).strip())
        self.git_dir = git_dir if git_dir.is_absolute() else self.path / git_dir

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
        """Commit what changed since the reset on ``toolfleet/changes/<change>``."""
        wt = self.path
        # a merge the tool left in conflict is no change: never commit conflict markers
        self._abort_unfinished()
        git("add", "--all", "--", ".", *(f":(exclude){p}" for p in self.ignore), cwd=wt)
        if git("diff", "--cached", "--name-only", cwd=wt).split():
            git("commit", "--quiet", "--no-verify", "-m", f"toolfleet change {change}", cwd=wt)
        # the tool may have committed too (aider's auto-commits): all since the base counts
        commit = git("rev-parse", "HEAD", cwd=wt).strip()
        files = sorted(git("diff", "--name-only", self.base, commit, cwd=wt).splitlines())
        now = time.time()
        if not files:
            return Changes(
                id=change,
                worker=self.worker,
                repo=self.source,
                branch=change_branch(change),
                base=self.base,
                state="empty",
                created_at=now,
            )
        branch = change_branch(change)
        git("branch", "--force", branch, commit, cwd=wt)
        if is_url(self.source):
            git("push", "--quiet", self.source, f"{branch}:{branch}", cwd=wt)
        insertions = deletions = 0
        for line in git("diff", "--numstat", self.base, commit, cwd=wt).splitlines():
            added, removed, _ = line.split("\t", 2)
            insertions += int(added) if added.isdigit() else 0
            deletions += int(removed) if removed.isdigit() else 0
        patch = git("diff", self.base, commit, cwd=wt)
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
