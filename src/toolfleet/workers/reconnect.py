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
from typing import Any

from celery import bootsteps

from toolfleet.broker.internals import qos_client, restore, unacked_headers
from toolfleet.workers import state

__all__ = ["RestoreOnReconnect"]

log = logging.getLogger(__name__)


class RestoreOnReconnect(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: on a restart after connection loss, restore our unstarted prompts."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.starts = 0

    def start(self, consumer: Any) -> None:
        self.starts += 1
        if self.starts == 1 or not state.installed():
            return
        tracker = state.parts().tracker
        ids = tracker.pending_ids()
        if not ids:
            return
        try:
            restored = self._restore(consumer, ids)
        except Exception as exc:
            log.warning("could not restore unstarted prompts after reconnecting: %s", exc)
            return
        tracker.forget(restored)
        if restored:
            log.info("restored %d unstarted prompt(s) after reconnecting", len(restored))

    @staticmethod
    def _restore(consumer: Any, ids: set[str]) -> set[str]:
        qos = consumer.connection.default_channel.qos
        restored: set[str] = set()
        with qos_client(qos) as client:
            for tag, headers in unacked_headers(client, qos).items():
                task_id = str(headers.get("id"))
                if task_id in ids:
                    restore(client, qos, tag)
                    restored.add(task_id)
        return restored
