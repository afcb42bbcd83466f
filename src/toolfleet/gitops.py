"""git through its own command line: one runner, failures as one-line errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from toolfleet.errors import GitError

__all__ = ["git", "is_url"]

#: who commits a session's changes
_IDENTITY = {
    "GIT_AUTHOR_NAME": "toolfleet",
    "GIT_AUTHOR_EMAIL": "toolfleet@localhost",
    "GIT_COMMITTER_NAME": "toolfleet",
    "GIT_COMMITTER_EMAIL": "toolfleet@localhost",
}


def is_url(repo: str) -> bool:
    """Whether ``repo`` names a remote repository rather than a local path."""
    return "://" in repo or (":" in repo and not Path(repo).exists() and "@" in repo)


def git(*args: str, cwd: str | os.PathLike[str], check: bool = True, timeout: float = 120.0) -> str:
    """Run ``git args`` in ``cwd``; its stdout, or GitError with git's message."""

    env = {**os.environ, **_IDENTITY, "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
        raise GitError(f"git {' '.join(args[:2])}: {why}")
    return done.stdout
