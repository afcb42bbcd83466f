"""git through its own command line: one runner, failures as one-line errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from toolfleet.errors import GitError

__all__ = ["IDENTITY", "git", "is_url", "run_git"]

#: who commits a session's changes
IDENTITY = {
    "GIT_AUTHOR_NAME": "toolfleet",
    "GIT_AUTHOR_EMAIL": "toolfleet@localhost",
    "GIT_COMMITTER_NAME": "toolfleet",
    "GIT_COMMITTER_EMAIL": "toolfleet@localhost",
}


def is_url(repo: str) -> bool:
    """Whether ``repo`` names a remote repository rather than a local path."""
    return "://" in repo or (":" in repo and not Path(repo).exists() and "@" in repo)


def run_git(
    *args: str, cwd: str | os.PathLike[str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``git args`` in ``cwd`` and return what it did, whatever its exit status."""
    env = {**os.environ, **IDENTITY, "GIT_TERMINAL_PROMPT": "0"}
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _failure(args: tuple[str, ...], done: subprocess.CompletedProcess[str]) -> GitError:
    """The one-line error of a git command that failed."""
    why = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
    return GitError(f"git {' '.join(args[:2])}: {why}")


def git(*args: str, cwd: str | os.PathLike[str], check: bool = True, timeout: float = 120.0) -> str:
    """Run ``git args`` in ``cwd``; its stdout, or GitError with git's message."""
    done = run_git(*args, cwd=cwd, timeout=timeout)
    if check and done.returncode != 0:
        raise _failure(args, done)
    return done.stdout
