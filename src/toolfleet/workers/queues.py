"""Turns consumption of the profile's shared queue on and off from any thread."""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["SharedQueueSwitch"]

log = logging.getLogger(__name__)


class SharedQueueSwitch:
    """Stops or resumes consuming one queue; the change runs on the worker's event loop."""

    def __init__(self, worker: Any, queue: str) -> None:
        self.worker = worker
        self.queue = queue
        self.consuming = True
        self._lock = threading.Lock()

    def set(self, consume: bool) -> None:
        with self._lock:
            if consume == self.consuming:
                return
            self.consuming = consume
        hub = getattr(self.worker, "hub", None)
        if hub is not None:
            hub.call_soon(self._apply)
        else:
            self._apply()

    def _apply(self) -> None:
        consumer = getattr(self.worker, "consumer", None)
        queues = self.worker.app.amqp.queues
        if consumer is None or consumer.task_consumer is None:
            # not consuming yet: change what the consumer will start with
            if self.consuming:
                queues.select_add(self.queue)
            else:
                queues.deselect(self.queue)
        elif self.consuming:
            consumer.add_task_queue(self.queue)
        else:
            consumer.cancel_task_queue(self.queue)
        log.info("%s queue %s", "consuming" if self.consuming else "stopped consuming", self.queue)
