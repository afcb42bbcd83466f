"""Which prompts this worker process holds, from Celery's task signals."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from celery.signals import task_postrun, task_prerun, task_received, task_revoked

__all__ = ["PromptTracker"]


class PromptTracker:
    """Prompts received and not started (``pending``), and received and not finished
    (``held``: the health record lists them for the orphan sweep).

    :meth:`connect` attaches it to Celery's signals and :meth:`disconnect` detaches it;
    the worker's tool step does both, so nothing is connected at import time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._held: set[str] = set()
        self._uid = f"toolfleet-tracker-{id(self)}"

    def connect(self) -> None:
        """Start following this process's tasks."""
        for signal, handler in self._handlers():
            signal.connect(handler, weak=False, dispatch_uid=self._uid)

    def disconnect(self) -> None:
        """Stop following them."""
        for signal, handler in self._handlers():
            signal.disconnect(handler, dispatch_uid=self._uid)

    def held_ids(self) -> list[str]:
        """Prompt ids received and not finished."""
        with self._lock:
            return sorted(self._held)

    def pending_ids(self) -> set[str]:
        """Prompt ids received and not started."""
        with self._lock:
            return set(self._pending)

    def forget(self, ids: Iterable[str]) -> None:
        """``ids`` went back to the broker: this process holds them no more."""
        ids = set(ids)
        with self._lock:
            self._pending -= ids
            self._held -= ids

    # ---- Celery signal handlers -----------------------------------------------------
    def _handlers(self) -> list[tuple[Any, Any]]:
        return [
            (task_received, self._on_received),
            (task_prerun, self._on_prerun),
            (task_postrun, self._on_postrun),
            (task_revoked, self._on_revoked),
        ]

    def _on_received(self, request: Any = None, **_: Any) -> None:
        if request is not None:
            with self._lock:
                self._pending.add(str(request.id))
                self._held.add(str(request.id))

    def _on_prerun(self, task_id: str | None = None, **_: Any) -> None:
        with self._lock:
            self._pending.discard(str(task_id))

    def _on_postrun(self, task_id: str | None = None, **_: Any) -> None:
        with self._lock:
            self._held.discard(str(task_id))

    def _on_revoked(self, request: Any = None, **_: Any) -> None:
        if request is not None:
            self.forget([str(request.id)])
