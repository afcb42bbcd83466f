"""Landing on a repository given by URL (a git host): the target branch and the changes'
branches fetched into the checkout before merging, the target pushed back after, each
tried again while the git host is away."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from toolfleet.broker.away import ride_out
from toolfleet.errors import GitError
from toolfleet.gitops import git, run_git
from toolfleet.models import Changes

__all__ = ["REMOTE_PATIENCE", "fetch_for_landing", "push_target", "retried"]

#: how long a fetch or push to the git host is tried again before the landing fails
REMOTE_PATIENCE = 300.0

T = TypeVar("T")


def retried(what: str, action: Callable[[], T], patience: float | None = None) -> T:
    """``action()``, tried again on GitError for up to ``patience`` s
    (:data:`REMOTE_PATIENCE`): :func:`ride_out` with the git host away; its last
    GitError then."""
    tries_for = REMOTE_PATIENCE if patience is None else patience
    return ride_out(action, what, tries_for, errors=(GitError,), away="the git host")


def fetch_for_landing(
    checkout: Path, url: str, target: str, records: list[Changes], checked_out: bool
) -> None:
    """Bring ``url``'s ``target`` branch and the commits of ``records`` into ``checkout``,
    and the local ``target`` up to the git host's (a fast-forward; the working tree too
    when it is checked out). GitError if the two have diverged: the checkout holds
    commits the git host lacks and the host commits the checkout lacks."""
    mirror = f"refs/toolfleet/remote/{target}"
    refspecs = [f"+refs/heads/{target}:{mirror}"]
    refspecs += [f"+refs/heads/{r.branch}:refs/heads/{r.branch}" for r in records if r.commit]
    retried(f"fetch from {url}", lambda: git("fetch", "--quiet", url, *refspecs, cwd=checkout))
    local, remote = git("rev-parse", f"refs/heads/{target}", mirror, cwd=checkout).split()
    if local == remote:
        return
    if run_git("merge-base", "--is-ancestor", remote, local, cwd=checkout).returncode == 0:
        return  # ahead of the git host: pushed with what lands now
    if run_git("merge-base", "--is-ancestor", local, remote, cwd=checkout).returncode != 0:
        raise GitError(f"{target} here and on {url} have diverged: pull or rebase it first")
    if checked_out:
        git("merge", "--ff-only", "--quiet", remote, cwd=checkout)
    else:
        git("update-ref", f"refs/heads/{target}", remote, local, cwd=checkout)


def push_target(checkout: Path, url: str, target: str) -> None:
    """Push ``target`` to ``url`` (a fast-forward), tried again while the host is away."""
    retried(
        f"push of {target} to {url}",
        lambda: git(
            "push", "--quiet", url, f"refs/heads/{target}:refs/heads/{target}", cwd=checkout
        ),
    )
