"""A submitted prompt: ``PromptHandle`` waits for its result, cancels it, recovers a
message the broker lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from celery.exceptions import TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult

from toolfleet.broker import PROMPT_TASK
from toolfleet.broker.internals import LOST_CHECK_EVERY, Whereabouts
from toolfleet.client.lost import LostWatch
from toolfleet.client.unavailable import redis_errors, unavailable
from toolfleet.errors import (
    NoWorkers,
    PromptCancelled,
    RedisUnavailable,
    ResultTimeout,
    ToolError,
    ToolfleetError,
)
from toolfleet.keys import STREAM_END, stream_key, text
from toolfleet.models import PromptResult

if TYPE_CHECKING:
    from toolfleet.client.fleet import Fleet
    from toolfleet.settings import Settings

__all__ = ["PromptHandle", "raise_task_error"]

log = logging.getLogger(__name__)


def raise_task_error(exc: Exception, settings: Settings, what: str) -> NoReturn:
    """Raise the typed error for what a prompt's task raised (``what``: "prompt ID"):
    revoked before it ran is PromptCancelled, Redis trouble RedisUnavailable, a toolfleet
    error itself, anything else a ToolfleetError naming it."""
    if isinstance(exc, TaskRevokedError):
        raise PromptCancelled(f"{what} was cancelled before it ran") from None
    if isinstance(exc, ToolfleetError):
        raise exc
    mapped = unavailable(exc, settings)
    raise mapped or ToolfleetError(f"{type(exc).__name__}: {exc}") from exc


class PromptHandle:
    """A submitted prompt: wraps Celery's AsyncResult, returns a PromptResult.

    While :meth:`get` waits it looks, every ``check_every`` seconds, for the prompt's
    message; a shared-queue prompt whose message the broker lost (see
    :mod:`toolfleet.broker.internals`) is sent again under the same id.
    """

    #: seconds between looks for a lost message while waiting
    check_every = LOST_CHECK_EVERY

    def __init__(
        self,
        fleet: Fleet,
        result: AsyncResult,
        profile: str,
        worker: str | None,
        resend: dict[str, Any] | None = None,
    ):
        self.fleet = fleet
        self.async_result = result
        self.profile = profile
        self.worker = worker
        #: looks for the prompt's message; sends it again if lost (shared-queue prompts)
        self.lost = LostWatch(fleet.app, fleet.settings, PROMPT_TASK, result.id, resend)
        #: the id of the last stream entry :meth:`stream` read (resume from it)
        self.stream_position = "0"

    @property
    def id(self) -> str:
        return str(self.async_result.id)

    @property
    def resent(self) -> int:
        """How many times the prompt was sent again because its message was lost."""
        return self.lost.resent

    def ready(self) -> bool:
        return bool(self.async_result.ready())

    def get(self, timeout: float | None = 60.0) -> PromptResult:
        """Wait for the result; raise its typed error, or ResultTimeout / NoWorkers."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if end is None else max(0.0, end - time.monotonic())
            wait = self.check_every if left is None else min(self.check_every, left)
            try:
                value = self.async_result.get(timeout=wait, propagate=True)
            except CeleryTimeout:
                if left is not None and wait >= left:
                    self._stop_listening()
                    raise self._why_late(timeout) from None
                try:
                    self.recover_if_lost()
                except RedisUnavailable as exc:  # away for now: the wait goes on
                    log.info("prompt %s: could not look for its message: %s", self.id, exc)
                continue
            except ToolError as exc:  # the tool answered: its answer, ok false
                return PromptResult.model_validate(exc.result)
            except Exception as exc:
                raise_task_error(exc, self.fleet.settings, f"prompt {self.id}")
            return PromptResult.model_validate(value)

    def stream(self, position: str = "0", timeout: float | None = None) -> Iterator[str]:
        """Yield the prompt's output as its tool prints it (cleaned like the result),
        from the start or after ``position`` (a :attr:`stream_position` of an earlier
        stream), until the prompt ends; then, read from the start, the rest of the
        result's output, so that the chunks add up to it. A prompt answered within 100 ms
        has no stream: its output comes as one chunk. Ends quietly on a failed prompt
        (:meth:`get` raises its error); ResultTimeout after ``timeout`` seconds."""
        client = self.fleet.app.backend.client
        key = stream_key(self.id)
        self.stream_position = position
        end = None if timeout is None else time.monotonic() + timeout
        streamed: list[str] = []
        while True:
            with redis_errors(self.fleet.settings):
                entries = client.xread({key: self.stream_position}, count=100, block=250)
            ended = False
            for _key, items in entries or []:
                for entry_id, fields in items:
                    self.stream_position = text(entry_id)
                    if STREAM_END.encode() in fields or STREAM_END in fields:
                        ended = True
                        break
                    chunk = text(fields.get(b"t", fields.get("t", b"")))
                    streamed.append(chunk)
                    yield chunk
            if ended or (not entries and self.ready()):
                break
            if end is not None and time.monotonic() >= end:
                raise self._why_late(timeout)
        try:
            result = self.get(timeout=None if end is None else max(1.0, end - time.monotonic()))
        except ToolfleetError:
            return
        so_far = "".join(streamed)
        if position == "0" and result.output.startswith(so_far) and result.output != so_far:
            yield result.output[len(so_far) :]

    def cancel(self) -> str:
        """Cancel the prompt: if queued it never runs; if running its tool is interrupted
        (restarted if it does not come back within the grace). ``get`` then raises
        PromptCancelled. Returns what happened: "revoked", "interrupted on W", "done"."""
        return self.fleet.cancel(self.id)[self.id]

    def _stop_listening(self) -> None:
        """Drop the result's subscription when ``get`` gives up (a later ``get``
        subscribes again). Left subscribed, Celery unsubscribes in
        ``AsyncResult.__del__``, from the garbage collector, possibly on a pub/sub
        connection it already closed: that opens a Redis connection nobody closes."""
        try:
            self.async_result.backend.remove_pending_result(self.async_result)
        except Exception as exc:  # Redis away: the subscription went with the connection
            log.debug("prompt %s: could not unsubscribe: %s", self.id, exc)

    def recover_if_lost(self) -> Whereabouts | None:
        """Where the prompt's message is; sent again if it was nowhere at this look and
        the last (see :class:`LostWatch`). None for a prompt pinned to one worker."""
        return self.lost.look(self.async_result.ready)

    def _why_late(self, timeout: float | None) -> ToolfleetError:
        healthy = [
            h for h in self.fleet.status(self.profile) if h.state not in ("failed", "stopping")
        ]
        if self.worker is not None:
            healthy = [h for h in healthy if h.worker == self.worker]
        if not healthy:
            target = f"worker {self.worker!r}" if self.worker else f"profile {self.profile!r}"
            return NoWorkers(f"no healthy worker serves {target}; the prompt is still queued")
        return ResultTimeout(f"no result for prompt {self.id} within {timeout:g} s")

    def __repr__(self) -> str:
        return f"<PromptHandle {self.id} profile={self.profile}>"
