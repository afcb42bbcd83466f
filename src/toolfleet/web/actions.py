"""What the page's buttons do: cancel, restart, apply and discard (blocking; one at a time)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from toolfleet.client.changes import ApplyResult, ChangeBook
from toolfleet.client.fleet import Fleet
from toolfleet.client.mergequeue import MergeQueue
from toolfleet.errors import ConfigError, GitError
from toolfleet.gitops import git

__all__ = ["Actions", "applied_message", "checkout_of", "valid_prompt_id"]


def valid_prompt_id(value: str) -> bool:
    """Whether ``value`` is a prompt id (a UUID)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def checkout_of(repo: Path | None) -> tuple[Path | None, str]:
    """The git checkout changes are applied into (``repo``, else the current directory
    if it is one), or None and why there is none."""
    where = repo if repo is not None else Path.cwd()
    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=where).strip())
    except (GitError, OSError) as exc:
        if repo is None:
            return None, (
                "no git checkout to apply into: start toolfleet web in one, or with --repo PATH"
            )
        return None, f"--repo {repo} is no git checkout ({exc})"
    return top, ""


class Actions:
    """The page's actions, run in a worker thread one at a time (each may wait for
    Celery's remote control, or for git)."""

    def __init__(
        self, fleet: Fleet, book: ChangeBook, repo: Path | None, why_no_repo: str = ""
    ) -> None:
        self.fleet = fleet
        self.book = book
        self.repo = repo
        self.why_no_repo = why_no_repo or "no git checkout to apply into"
        self._lock = threading.Lock()

    def cancel(self, prompt_id: str) -> str:
        """Cancel a prompt: what became of it ("interrupted on W", "revoked", "done")."""
        if not valid_prompt_id(prompt_id):
            raise ConfigError(f"{prompt_id!r} is no prompt id")
        with self._lock:
            return self.fleet.cancel(prompt_id)[prompt_id]

    def restart(self, worker: str, timeout: float = 10.0) -> str:
        """Restart ``worker``'s tool (Celery remote control ``tool_restart``)."""
        with self._lock:
            answers = self.fleet.restart(worker, timeout)
        for node, answer in answers.items():
            if isinstance(answer, dict) and "error" in answer:
                raise ConfigError(f"{node}: {answer['error']}")
            shown = answer.get("ok", answer) if isinstance(answer, dict) else answer
            return f"{node}: {shown}"
        raise ConfigError(f"no reply from {worker} within {timeout:g} s")

    def apply(self, changes: list[str]) -> ApplyResult:
        """Merge ``changes`` into the branch checked out in the repository, through the
        merge queue (the branch's fleet-wide lock; a URL repository's branch there)."""
        if self.repo is None:
            raise ConfigError(self.why_no_repo)
        with self._lock:
            return MergeQueue(self.book, self.repo).land(changes)

    def discard(self, changes: list[str]) -> list[str]:
        """Delete the changes' branches and mark them discarded."""
        with self._lock:
            for change in changes:
                self.book.discard(change, repo=self.repo or ".")
        return changes

    def release(self) -> None:
        """Close what this thread opened (Celery's per-thread result backend)."""
        self.fleet.release_thread()


def applied_message(result: ApplyResult) -> dict[str, Any]:
    """An apply's outcome as the page shows it."""
    parts = [f"applied {c}" for c in result.applied]
    parts += [f"nothing to apply in {c} (it changed no file)" for c in result.empty]
    parts += [
        f"conflict: {c} not applied ({', '.join(files) or 'see git'}); the branch is unchanged"
        for c, files in result.conflicts.items()
    ]
    parts += [f"refused: {c} not applied: {why}" for c, why in result.refused.items()]
    return {
        "ok": not (result.conflicts or result.refused),
        "message": "; ".join(parts) or "nothing applied",
        "applied": result.applied,
        "empty": result.empty,
        "conflicts": result.conflicts,
    }
