"""Several prompts in one message: a chunk's handle, and a handle per prompt in it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from toolfleet import errors
from toolfleet.broker import CHUNK_PROGRESS, CHUNK_TASK
from toolfleet.client.handle import raise_task_error
from toolfleet.client.lost import LostWatch
from toolfleet.client.unavailable import redis_errors
from toolfleet.errors import RedisUnavailable, ResultTimeout, ToolfleetError
from toolfleet.models import PromptResult

if TYPE_CHECKING:
    from toolfleet.client.fleet import Fleet

__all__ = ["ChunkHandle", "ChunkItemHandle", "chunk_error"]


def chunk_error(outcome: dict[str, Any]) -> ToolfleetError:
    """The typed error of one prompt's failed outcome in a chunk's reply."""
    cls = getattr(errors, str(outcome.get("error")), None)
    if not (isinstance(cls, type) and issubclass(cls, ToolfleetError)):
        cls = ToolfleetError
    exc = cls(str(outcome.get("message", "")))
    if bool(outcome.get("retryable")) != cls.retryable:
        exc.retryable = bool(outcome.get("retryable"))
    return exc


class ChunkHandle:
    """One message carrying several prompts: its outcomes, fetched once, shared by the
    prompts' :class:`ChunkItemHandle` (``items``); how far its worker got; a lost
    message sent again (``resend``: ``send_task``'s keywords)."""

    def __init__(
        self,
        fleet: Fleet,
        result: AsyncResult,
        profile: str,
        size: int,
        resend: dict[str, Any] | None = None,
    ) -> None:
        self.fleet = fleet
        self.async_result = result
        self.profile = profile
        self.items = [ChunkItemHandle(self, i) for i in range(size)]
        #: looks for the chunk's message; sends it again if the broker lost it
        self.lost = LostWatch(fleet.app, fleet.settings, CHUNK_TASK, result.id, resend)
        self._outcomes: list[dict[str, Any]] | None = None
        self._error: ToolfleetError | None = None
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        return str(self.async_result.id)

    def ready(self) -> bool:
        return self._outcomes is not None or self._error is not None or self.async_result.ready()

    def progress(self) -> int | None:
        """How many of the chunk's prompts its worker has finished (one read), or None
        while no worker has started it (or its record was lost with Redis)."""
        with redis_errors(self.fleet.settings):
            meta = self.async_result.backend.get_task_meta(self.id)
        info = meta.get("result")
        if meta.get("status") != CHUNK_PROGRESS or not isinstance(info, dict):
            return None
        done = info.get("done")
        return done if isinstance(done, int) else None

    def outcomes(self, timeout: float | None = 60.0) -> list[dict[str, Any]]:
        """Every prompt's outcome; the chunk's own error if it failed whole (e.g. its
        worker was lost: every prompt in it then failed the same way)."""
        with self._lock:
            if self._outcomes is None and self._error is None:
                self._fetch(timeout)
            if self._error is not None:
                raise self._error
            assert self._outcomes is not None
            return self._outcomes

    def _fetch(self, timeout: float | None) -> None:
        try:
            value = self.async_result.get(timeout=timeout, propagate=True)
        except CeleryTimeout:
            raise ResultTimeout(f"no result for chunk {self.id} within {timeout:g} s") from None
        except Exception as exc:
            try:
                raise_task_error(exc, self.fleet.settings, f"chunk {self.id}")
            except RedisUnavailable:
                raise  # Redis's trouble, not the chunk's: not kept
            except ToolfleetError as error:
                self._error = error
        else:
            if not isinstance(value, list) or len(value) != len(self.items):
                self._error = ToolfleetError(f"chunk {self.id}: unexpected reply {value!r:.80}")
            else:
                self._outcomes = value

    def __repr__(self) -> str:
        return f"<ChunkHandle {self.id} profile={self.profile} prompts={len(self.items)}>"


class ChunkItemHandle:
    """One prompt of a chunk, with a prompt handle's ``id``, ``ready`` and ``get``."""

    def __init__(self, chunk: ChunkHandle, index: int) -> None:
        self.chunk = chunk
        self.index = index

    @property
    def id(self) -> str:
        return f"{self.chunk.id}:{self.index}"

    def ready(self) -> bool:
        return self.chunk.ready()

    def get(self, timeout: float | None = 60.0) -> PromptResult:
        """The prompt's result (``ok`` false if its tool reported an error), or its
        typed error."""
        outcome = self.chunk.outcomes(timeout)[self.index]
        if "result" in outcome:
            return PromptResult.model_validate(outcome["result"])
        raise chunk_error(outcome)

    def __repr__(self) -> str:
        return f"<ChunkItemHandle {self.id}>"
