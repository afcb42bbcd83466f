"""After a lost broker connection, put back the prompts this worker received but never began.

When Redis goes away, the prompts a worker had received (prefetched) but not started stay
in Redis' unacknowledged set, invisible until the visibility timeout (an hour by default)
passes. This consumer step runs at every (re)start of the worker's consumer and restores
exactly those prompts, so they run again within seconds of the reconnection. Prompts that
were running go on; their results are stored once Redis is back, and a later redelivery
of their message returns that result instead of running them again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps
from celery.signals import task_postrun, task_prerun, task_received, task_revoked

from toolfleet.broker.internals import qos_client, restore, unacked_headers

__all__ = ["RestoreOnReconnect", "held_ids", "pending_ids"]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_received_not_started: set[str] = set()
_held: set[str] = set()  # received and not finished (the health record lists them)


@task_received.connect(weak=False)  # type: ignore[untyped-decorator]
def _on_received(request: Any = None, **_: Any) -> None:
    if request is not None:
        with _lock:
            _received_not_started.add(str(request.id))
            _held.add(str(request.id))


@task_prerun.connect(weak=False)  # type: ignore[untyped-decorator]
def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    with _lock:
        _received_not_started.discard(str(task_id))


@task_postrun.connect(weak=False)  # type: ignore[untyped-decorator]
def _on_postrun(task_id: str | None = None, **_: Any) -> None:
    with _lock:
        _held.discard(str(task_id))


@task_revoked.connect(weak=False)  # type: ignore[untyped-decorator]
def _on_revoked(request: Any = None, **_: Any) -> None:
    if request is not None:
        with _lock:
            _received_not_started.discard(str(request.id))
            _held.discard(str(request.id))


def held_ids() -> list[str]:
    """Prompt ids this process received and has not finished."""
    with _lock:
        return sorted(_held)


def pending_ids() -> set[str]:
    """Prompt ids this process received and has not started."""
    with _lock:
        return set(_received_not_started)


class RestoreOnReconnect(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: on a restart after connection loss, restore our unstarted prompts."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.starts = 0

    def start(self, consumer: Any) -> None:
        self.starts += 1
        ids = pending_ids()
        if self.starts == 1 or not ids:
            return
        try:
            restored = self._restore(consumer, ids)
        except Exception as exc:
            log.warning("could not restore unstarted prompts after reconnecting: %s", exc)
            return
        with _lock:
            _received_not_started.difference_update(restored)
            _held.difference_update(restored)
        if restored:
            log.info("restored %d unstarted prompt(s) after reconnecting", len(restored))

    @staticmethod
    def _restore(consumer: Any, ids: set[str]) -> set[str]:
        channel = consumer.connection.default_channel
        qos = channel.qos
        restored: set[str] = set()
        with qos_client(qos) as client:
            for tag, headers in unacked_headers(client, qos).items():
                task_id = str(headers.get("id"))
                if task_id in ids:
                    restore(client, qos, tag)
                    restored.add(task_id)
        return restored
