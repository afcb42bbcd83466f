"""What sessions and bulk runs need of a fleet (Protocols, so they never import Fleet)."""

from __future__ import annotations

from typing import Any, Protocol

from toolfleet.models import InstanceHealth, PromptResult
from toolfleet.settings import Settings

__all__ = ["FleetLike", "Handle", "Submitter"]


class Handle(Protocol):
    """What ``Fleet.submit`` returns (a ``PromptHandle``), as far as callers need it."""

    @property
    def id(self) -> str: ...

    def ready(self) -> bool: ...

    def get(self, timeout: float | None = ...) -> PromptResult: ...


class Submitter(Protocol):
    """Anything with ``Fleet.submit``'s signature (a ``Fleet``)."""

    def submit(
        self,
        text: str,
        profile: str = ...,
        *,
        timeout: float | None = ...,
        budget: float | None = ...,
    ) -> Handle: ...


class FleetLike(Protocol):
    """What a session needs of its fleet: settings, the Celery app, health, submit."""

    settings: Settings
    app: Any

    def status(
        self, profile: str | None = ..., *, fresher_than: float | None = ...
    ) -> list[InstanceHealth]: ...

    def submit(
        self,
        text: str,
        profile: str = ...,
        *,
        timeout: float | None = ...,
        worker: str | None = ...,
        session: str | None = ...,
        seq: int | None = ...,
        budget: float | None = ...,
    ) -> Handle: ...

    def cancel(self, *prompt_ids: str) -> dict[str, str]: ...
