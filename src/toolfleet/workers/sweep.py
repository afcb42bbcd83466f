"""Puts back the prompts of a worker that died, seconds after its health record expires.

A worker killed mid-prompt leaves the prompt's message in kombu's ``unacked`` hash, where
Redis hands it out again only after the visibility timeout (an hour by default). Yet
the fleet knows sooner that the worker is gone: its health record expires after three
heartbeat intervals, and every live record lists the prompts its worker holds
(``InstanceHealth.holding``). So, once per interval, one worker of the fleet (a Redis
lock elects it) restores each toolfleet prompt in ``unacked`` that was delivered more
than ``grace`` seconds ago, has no result, and is held by no live worker. The restored
message is marked redelivered: the duplicate-delivery guard then applies as for any
redelivery (a finished first run's result is returned; ``on_worker_lost = "fail"``
fails it instead of running it again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from toolfleet.broker import CHUNK_TASK, PROMPT_TASK
from toolfleet.broker.internals import delivery_times, qos_client, restore, unacked_headers
from toolfleet.health import read_health
from toolfleet.keys import SWEEP_LOCK, RedisLike

__all__ = ["SWEEP_LOCK", "OrphanSweeper"]

log = logging.getLogger(__name__)


class OrphanSweeper:
    """Restores prompts held by no live worker (see the module's docstring)."""

    def __init__(
        self,
        backend: RedisLike,
        qos: Callable[[], Any],
        result_key: Callable[[str], Any],
        *,
        me: str,
        interval: float,
        grace: float,
    ) -> None:
        self.backend = backend
        self.qos = qos  # the consumer channel's QoS (it changes on reconnects)
        self.result_key = result_key
        self.me = me
        self.interval = interval
        self.grace = grace
        self._next = 0.0

    def maybe_sweep(self) -> list[str]:
        """Sweep if this worker's turn has come (called about once a second)."""
        now = time.monotonic()
        if now < self._next:
            return []
        self._next = now + self.interval
        qos = self.qos()
        if qos is None:
            return []  # not consuming, or the broker connection is being restored
        with qos_client(qos) as broker:
            if not broker.set(SWEEP_LOCK, self.me, nx=True, px=int(self.interval * 1000)):
                return []  # another worker sweeps this interval
            return self.sweep(qos, broker)

    def sweep(self, qos: Any, broker: RedisLike) -> list[str]:
        """Restore every orphaned prompt now; returns their ids."""
        entries = unacked_headers(broker, qos)
        if not entries:
            return []
        delivered = delivery_times(broker, qos)
        held = {pid for record in read_health(self.backend) for pid in record.holding}
        now = time.time()
        restored = []
        for tag, headers in entries.items():
            prompt_id = str(headers.get("id"))
            if headers.get("task") not in (PROMPT_TASK, CHUNK_TASK) or prompt_id in held:
                continue
            if now - delivered.get(tag, now) < self.grace:
                continue
            if self.backend.exists(self.result_key(prompt_id)):
                continue  # answered; its ack was lost with the worker: nothing to run
            restore(broker, qos, tag)
            restored.append(prompt_id)
        if restored:
            log.warning(
                "%s: put back %d prompt(s) of workers that died: %s",
                self.me,
                len(restored),
                ", ".join(restored),
            )
        return restored
