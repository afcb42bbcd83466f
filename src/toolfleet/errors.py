"""The exception tree, shared by producers and workers.

::

    ToolfleetError
    ├── PromptRejected      bad input, refused before anything reached a tool
    ├── ToolTimeout         the tool did not answer before the prompt's deadline
    ├── ToolCrashed         the tool died while (or before) answering
    ├── IncompleteInput     the prompt left the tool waiting for more input
    ├── SessionLost         the instance restarted (or the lease ended) under a session
    ├── NoWorkers           no healthy worker serves the profile
    ├── ResultTimeout       the producer gave up waiting for a result
    └── ConfigError         a profile or a setting is unusable

Every class takes one message string, so Celery's JSON result backend carries them as
plain data and the producer gets the same class back.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "IncompleteInput",
    "NoWorkers",
    "PromptRejected",
    "ResultTimeout",
    "SessionLost",
    "ToolCrashed",
    "ToolTimeout",
    "ToolfleetError",
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


class SessionLost(ToolfleetError):
    """The session's instance restarted or its lease ended; its state is gone."""


class NoWorkers(ToolfleetError):
    """No healthy worker serves the requested profile or name."""

    retryable = True


class ResultTimeout(ToolfleetError):
    """No result arrived within the producer's timeout."""

    retryable = True


class ConfigError(ToolfleetError):
    """A profile or setting is invalid."""
