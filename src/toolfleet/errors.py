"""The exception tree, shared by producers and workers.

::

    ToolfleetError
    ├── PromptRejected      bad input, refused before anything reached a tool
    ├── ToolError           the tool answered, and reported an error (``ok`` false)
    ├── ToolTimeout         the tool did not answer before the prompt's deadline
    ├── ToolCrashed         the tool died while (or before) answering
    ├── IncompleteInput     the prompt left the tool waiting for more input
    ├── PromptCancelled     cancelled: never run, or interrupted while it ran
    ├── BudgetSpent         a budget is spent: nothing more is sent
    ├── ProviderQuotaExhausted  the provider said the account's quota is gone
    ├── CheckFailed         an item's check failed after its repair turns
    ├── SessionLost         the instance restarted (or the lease ended) under a session
    ├── NoWorkers           no healthy worker serves the profile
    ├── ResultTimeout       the producer gave up waiting for a result
    ├── RedisUnavailable    the broker or result backend does not answer, or refuses us
    ├── GitError            a git command of a worktree workspace or an apply failed
    ├── ChangeNotRecorded   an item's change was not recorded (not pushed, worker gone)
    ├── UnknownChange       no change record has that id
    ├── DirtyTarget         the checkout to apply changes to has uncommitted changes
    └── ConfigError         a profile or a setting is unusable
        └── UnknownProfile  no worker and no profiles file knows the profile

Every class takes one message string (``ToolError`` also the answer as a dict), so
Celery's JSON result backend carries them as plain data and the producer gets the same
class back.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BudgetSpent",
    "ChangeNotRecorded",
    "CheckFailed",
    "ConfigError",
    "DirtyTarget",
    "GitError",
    "IncompleteInput",
    "NoWorkers",
    "PromptCancelled",
    "PromptRejected",
    "ProviderQuotaExhausted",
    "RedisUnavailable",
    "ResultTimeout",
    "SessionLost",
    "ToolCrashed",
    "ToolError",
    "ToolTimeout",
    "ToolfleetError",
    "UnknownChange",
    "UnknownProfile",
    "WorkerLost",
]


class ToolfleetError(Exception):
    """Root of every error toolfleet raises."""

    #: whether running the same prompt again may succeed
    retryable: bool = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class PromptRejected(ToolfleetError):
    """The prompt is invalid (size, encoding, control bytes); nothing was sent."""


class ToolError(ToolfleetError):
    """The tool answered and reported an error (a traceback, a non-zero exit status).

    The worker raises it so that Celery and Flower count the prompt as failed; it carries
    the whole answer (a PromptResult as a dict, ``ok`` false), which
    ``PromptHandle.get()`` returns instead of raising.
    """

    def __init__(self, message: str = "", result: dict[str, Any] | None = None) -> None:
        Exception.__init__(self, message, result or {})

    @property
    def result(self) -> dict[str, Any]:
        """The answer, as the fields of a PromptResult."""
        return dict(self.args[1]) if len(self.args) > 1 else {}

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ToolError({self.message!r})"


class ToolTimeout(ToolfleetError):
    """The tool did not finish answering before the deadline."""

    retryable = True


class ToolCrashed(ToolfleetError):
    """The tool process died; the worker restarts it."""

    retryable = True


class WorkerLost(ToolCrashed):
    """The worker died while running the prompt, whose profile runs prompts at most once
    (``on_worker_lost = "fail"``): it may have had its effect, so it is not run again,
    and retrying it is the caller's decision (``map`` does not)."""

    retryable = False


class IncompleteInput(ToolfleetError):
    """The prompt opened a continuation (e.g. an unclosed bracket); it was interrupted."""


class PromptCancelled(ToolfleetError):
    """The prompt was cancelled: it never reached the tool, or the tool was interrupted
    (and restarted if it did not come back) while answering it."""


class BudgetSpent(ToolfleetError):
    """The cost a session's (or map run's) prompts reported reached its budget, or the
    model gateway refused the request that would have passed an item's: nothing more is
    sent."""


class ProviderQuotaExhausted(ToolfleetError):
    """The model provider said the account's quota (or credit) is exhausted: no retry
    helps, so new work on that upstream stops; the prompt did not finish and may run
    again once the quota is back (a map leaves such items not run, resumable)."""


class CheckFailed(ToolfleetError):
    """An item's check failed after its repair turns: its change is rejected."""


class SessionLost(ToolfleetError):
    """The session's instance restarted or its lease ended; its state is gone."""


class NoWorkers(ToolfleetError):
    """No healthy worker serves the requested profile or name."""

    retryable = True


class ResultTimeout(ToolfleetError):
    """No result arrived within the producer's timeout."""

    retryable = True


class RedisUnavailable(ToolfleetError):
    """Redis (the broker or the result backend) does not answer, or refuses the password."""

    retryable = True


class GitError(ToolfleetError):
    """A git command failed (its message is git's own, in one line)."""


class ChangeNotRecorded(ToolfleetError):
    """An item's change was not recorded: its worker could not push it, or went away
    (frozen, cut off, killed) before recording it. Nothing of it was kept: the item may
    run again."""

    retryable = True


class UnknownChange(ToolfleetError):
    """No change record has that id (never made, or expired with the results)."""


class DirtyTarget(ToolfleetError):
    """The checkout to apply changes to has uncommitted changes: nothing was applied."""


class ConfigError(ToolfleetError):
    """A profile or setting is invalid."""


class UnknownProfile(ConfigError):
    """No live worker serves the profile and no profiles file defines it; nothing was sent."""
