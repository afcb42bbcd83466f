"""One item's attempts in a bulk run: its slot, the retry policy, its outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from celery.exceptions import WorkerLostError

from toolfleet.client.items import TOOL_ERROR, MapItem, MapOutcome
from toolfleet.client.protocols import Handle
from toolfleet.errors import ConfigError, ToolfleetError
from toolfleet.models import PromptResult
from toolfleet.profiles import Profile, load_profiles

__all__ = [
    "NoHandle",
    "Slot",
    "error_type",
    "local_profile",
    "profile_chunk",
    "profile_deadline",
    "retryable",
    "settle_outcome",
]


@dataclass
class Slot:
    """An outstanding submission of one item."""

    item: MapItem
    handle: Handle
    attempt: int  # 1 for the first submission
    first_submit: float  # monotonic time of the item's first submission
    submitted: float  # monotonic time of this submission
    deadline: float  # monotonic time after which the result counts as lost


def retryable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retryable", False)) or isinstance(exc.__cause__, WorkerLostError)


def error_type(exc: BaseException) -> str:
    """The class name, or that of the Celery error a bare ToolfleetError wraps."""
    if type(exc) is ToolfleetError and exc.__cause__ is not None:
        return type(exc.__cause__).__name__
    return type(exc).__name__


class NoHandle:
    """Stands for a submission refused before it reached the broker."""

    id = ""

    def ready(self) -> bool:
        return True

    def get(self, timeout: float | None = None) -> PromptResult:
        raise AssertionError("never submitted")


def settle_outcome(
    slot: Slot, result: PromptResult | None, error: BaseException | None
) -> MapOutcome:
    """The item's outcome from its last attempt's ``result`` or ``error`` (with what a
    multi-step item changed and how its check ended, whichever way it ended)."""
    handle = slot.handle
    steps: tuple[PromptResult, ...] = tuple(getattr(handle, "results", ()))
    ended = MapOutcome(
        slot.item.key,
        False,
        attempts=slot.attempt,
        duration_ms=(time.monotonic() - slot.first_submit) * 1000,
        steps=steps,
        changes=getattr(handle, "changes", None),
        check=getattr(handle, "check_result", None),
        repairs=getattr(handle, "repairs", 0),
    )
    if result is not None and error is None:
        if result.ok:
            return replace(ended, ok=True, result=result, worker=result.worker)
        why = (
            "the tool reported an error"
            if result.exit_status is None
            else f"exit status {result.exit_status}"
        )
        if steps:
            why = f"step {len(steps)} of {len(slot.item.steps)}: {why}"
        return replace(ended, result=result, error_type=TOOL_ERROR, error=why, worker=result.worker)
    assert error is not None
    message = error.message if isinstance(error, ToolfleetError) else str(error)
    worker = steps[-1].worker if steps else None
    return replace(ended, error_type=error_type(error), error=message, worker=worker)


def local_profile(fleet: object, profile: str) -> Profile | None:
    """``profile`` as this machine knows it (built-in or TOOLFLEET_PROFILES), if it does."""
    settings = getattr(fleet, "settings", None)
    try:
        profiles = load_profiles(getattr(settings, "profiles", None))
    except ConfigError:
        profiles = load_profiles(None)
    return profiles.get(profile)


def profile_deadline(fleet: object, profile: str) -> float:
    """The prompt deadline of ``profile`` as this machine knows it (60 s if unknown)."""
    known = local_profile(fleet, profile)
    return 60.0 if known is None else float(known.prompt_timeout)


def profile_chunk(fleet: object, profile: str) -> int:
    """Prompts per message for ``profile`` in a map (its ``chunk``; 1 if unknown)."""
    known = local_profile(fleet, profile)
    return 1 if known is None else known.chunk
