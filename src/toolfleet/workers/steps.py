"""The worker bootstep: starts the tool before the worker consumes, stops it on shutdown."""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from toolfleet.broker import direct_queue, shared_queue
from toolfleet.broker.internals import consumer_qos
from toolfleet.errors import ConfigError
from toolfleet.health import readable
from toolfleet.models import InstanceHealth
from toolfleet.profiles import get_profile
from toolfleet.settings import Settings
from toolfleet.workers import control, state  # control registers the remote-control commands
from toolfleet.workers.guard import Claim, DeliveryGuard
from toolfleet.workers.heartbeat import Heartbeat
from toolfleet.workers.lease import LeaseKeeper
from toolfleet.workers.queues import SharedQueueSwitch
from toolfleet.workers.reconnect import held_ids
from toolfleet.workers.supervisor import Supervisor
from toolfleet.workers.sweep import OrphanSweeper

__all__ = ["ToolStep", "control"]


class ToolStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Owns this worker's one tool instance (wiring only; see Supervisor, Heartbeat)."""

    label = "toolfleet"

    def __init__(self, worker: Any, profile: str | None = None, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        if not profile:
            raise ConfigError("a toolfleet worker needs --profile NAME (see: toolfleet profiles)")
        self.settings: Settings = worker.app.conf.toolfleet_settings
        self.profile = get_profile(profile, self.settings.profiles)
        worker.app.amqp.queues.select_add(shared_queue(self.profile.name))
        self.supervisor: Supervisor | None = None
        self.heartbeat: Heartbeat | None = None

    def start(self, worker: Any) -> None:
        import os

        from toolfleet.tool.instance import ToolInstance

        name = shared_queue(self.profile.name)
        queues = [name, direct_queue(worker.hostname).name]
        client = worker.app.backend.client
        sup = self.supervisor = Supervisor(ToolInstance(self.profile), worker.hostname, queues)
        switch = SharedQueueSwitch(worker, name)
        beat: Heartbeat | None = None
        interval = self.settings.heartbeat_interval
        if interval > 0:
            beat = self.heartbeat = Heartbeat(
                client,
                self.health,
                interval,
                # `holding` rides along but triggers no write: every interval's write
                # carries it, and the orphan sweep waits longer than an interval
                state=lambda: (sup.public_state, sup.session),
            )
            sweeper = OrphanSweeper(
                client,
                lambda: consumer_qos(worker),
                worker.app.backend.get_key_for_task,
                me=worker.hostname,
                interval=interval,
                grace=2 * interval + 1,
            )
            sup.periodic.append(sweeper.maybe_sweep)

        def changed(*_: object) -> None:
            switch.set(sup.takes_shared_work)
            if beat is not None:
                beat.notify()

        sup.subscribe(changed)
        leases = LeaseKeeper(sup, client, changed)
        sup.periodic.append(leases.check)
        guard = DeliveryGuard(
            client,
            Claim(worker.hostname, os.getpid()),
            ttl=self.settings.result_expires,
            visibility_timeout=self.settings.visibility_timeout,
        )
        state.install(state.WorkerParts(sup, guard, leases))
        if beat is not None:
            beat.start()
        sup.start(wait=True)

    def stop(self, worker: Any) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            state.uninstall()
        if self.heartbeat is not None:
            self.heartbeat.stop()

    def health(self) -> InstanceHealth:
        """The health record now, with the prompts this worker holds."""
        assert self.supervisor is not None
        return self.supervisor.health().model_copy(update={"holding": held_ids()})

    def info(self, worker: Any) -> dict[str, Any]:
        if self.supervisor is None:
            return {}
        record = self.health()
        if record.state == "ready" and record.holding:  # received, not yet typed in
            record = record.model_copy(update={"state": "busy"})
        return {"toolfleet": readable(record)}
