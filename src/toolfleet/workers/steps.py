"""The worker's steps: the tool (a worker step), and heartbeat, sweep and leases (consumer
steps, started in dependency order by Celery). Wiring only: the services are plain classes."""

from __future__ import annotations

import os
from typing import Any

from celery import bootsteps
from celery.signals import worker_shutting_down

from toolfleet.broker import direct_queue, shared_queue
from toolfleet.broker.internals import consumer_qos
from toolfleet.errors import ConfigError
from toolfleet.gateway.proxy import start_gateway
from toolfleet.health import readable
from toolfleet.models import InstanceHealth
from toolfleet.profiles import get_profile
from toolfleet.settings import Settings
from toolfleet.workers import control, state  # control registers the remote-control commands
from toolfleet.workers.guard import Claim, DeliveryGuard
from toolfleet.workers.heartbeat import Heartbeat
from toolfleet.workers.lease import LeaseKeeper
from toolfleet.workers.mailbox import LeaseMailbox
from toolfleet.workers.queues import SharedQueueSwitch
from toolfleet.workers.revoked import load_cancelled
from toolfleet.workers.stopping import StopWatch, answers_within
from toolfleet.workers.stream import OutputStreamer
from toolfleet.workers.supervisor import Supervisor
from toolfleet.workers.sweep import OrphanSweeper
from toolfleet.workers.workspace import Worktree

__all__ = ["HeartbeatStep", "LeaseStep", "StreamStep", "SweepStep", "ToolStep", "control"]

_CONNECTION = "celery.worker.consumer.connection:Connection"
_TASKS = "celery.worker.consumer.tasks:Tasks"


def _health() -> InstanceHealth:
    """This worker's health record now, with the prompts it holds."""
    parts = state.parts()
    return parts.supervisor.health().model_copy(update={"holding": parts.tracker.held_ids()})


class ToolStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Owns this worker's one tool instance: started before the worker consumes."""

    label = "toolfleet"

    def __init__(self, worker: Any, profile: str | None = None, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        if not profile:
            raise ConfigError("a toolfleet worker needs --profile NAME (see: toolfleet profiles)")
        from toolfleet.tool.factory import make_instance

        self.settings: Settings = worker.app.conf.toolfleet_settings
        self.profile = get_profile(profile, self.settings.profiles)
        self.gateway = start_gateway(self.profile, self.settings, worker.app.backend.client)
        if self.gateway is not None:  # the agent is pointed at it, given no real key
            env = {**self.profile.env, **self.gateway.instance_env()}
            self.profile = self.profile.model_copy(update={"env": env})
        self.queue = shared_queue(self.profile.name)
        worker.app.amqp.queues.select_add(self.queue)
        queues = [self.queue, direct_queue(worker.hostname).name]
        workspace = None
        if self.profile.workspace == "worktree":  # the tool works in its own worktree
            workspace = Worktree(self.profile, worker.hostname)
        cwd = None if workspace is None else str(workspace.path)
        tool = make_instance(self.profile, cwd=cwd)
        self.supervisor = Supervisor(tool, worker.hostname, queues)
        if self.gateway is not None:
            self.supervisor.meter = self.gateway.meter
        guard = DeliveryGuard(
            worker.app.backend.client,
            Claim(worker.hostname, os.getpid()),
            ttl=self.settings.result_expires,
            visibility_timeout=self.settings.visibility_timeout,
        )
        # installed now, so that the consumer steps (built next) find the parts
        state.install(state.WorkerParts(self.supervisor, guard, workspace=workspace))
        client = worker.app.backend.client
        self.stopwatch = StopWatch(lambda: answers_within(client.ping))
        worker_shutting_down.connect(self.stopwatch.start, sender=worker.hostname, weak=False)

    def start(self, worker: Any) -> None:
        load_cancelled(worker.app.backend.client)  # before the worker takes any prompt
        sup = self.supervisor
        switch = SharedQueueSwitch(worker, self.queue)
        sup.subscribe(lambda *_: switch.set(sup.takes_shared_work))
        parts = state.parts()
        parts.tracker.connect()
        if parts.workspace is not None:
            try:
                parts.workspace.prepare()
            except ConfigError as exc:  # the worker stays up, failed, saying why
                sup.fail(exc.message)
                return
        sup.start(wait=True)

    def stop(self, worker: Any) -> None:
        self.supervisor.stop()
        if self.gateway is not None:
            self.gateway.stop()
        if state.installed():
            parts = state.parts()
            parts.tracker.disconnect()
            if parts.workspace is not None:
                parts.workspace.remove()
            state.uninstall()

    def info(self, worker: Any) -> dict[str, Any]:
        if not state.installed():
            return {}
        record = _health()
        if record.state == "ready" and record.holding:  # received, not yet typed in
            record = record.model_copy(update={"state": "busy"})
        return {"toolfleet": readable(record)}


class _ConsumerStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """A consumer step that lives from the first start to shutdown: a broker reconnect
    (which restarts the consumer's steps) leaves it running."""

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.started = False
        self.settings: Settings = consumer.app.conf.toolfleet_settings

    def start(self, consumer: Any) -> None:
        if not self.started and state.installed():
            self.started = True
            self.begin(consumer, state.parts())

    def stop(self, consumer: Any) -> None:
        """A consumer restart: keep going."""

    def shutdown(self, consumer: Any) -> None:
        if self.started:
            self.started = False
            self.end()

    def begin(self, consumer: Any, parts: state.WorkerParts) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


class HeartbeatStep(_ConsumerStep):
    """Writes the health record every interval and on every change (off at interval 0)."""

    requires = (_CONNECTION,)
    heartbeat: Heartbeat | None = None

    def begin(self, consumer: Any, parts: state.WorkerParts) -> None:
        if self.settings.heartbeat_interval <= 0:
            return
        sup = parts.supervisor
        beat = self.heartbeat = Heartbeat(
            consumer.app.backend.client,
            _health,
            self.settings.heartbeat_interval,
            # `holding` rides along but triggers no write: every interval's write
            # carries it, and the orphan sweep waits longer than an interval
            state=lambda: (sup.public_state, sup.session),
            free=lambda state: state == ("ready", None),
        )
        sup.subscribe(lambda old, new: beat.notify(urgent=old == "restarting"))
        beat.start()

    def end(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()


class SweepStep(_ConsumerStep):
    """Puts back dead workers' prompts (needs the health records the heartbeat writes)."""

    requires = (_TASKS, "toolfleet.workers.steps:HeartbeatStep")
    sweeper: OrphanSweeper | None = None

    def begin(self, consumer: Any, parts: state.WorkerParts) -> None:
        interval = self.settings.heartbeat_interval
        if interval <= 0:
            return
        self.sweeper = OrphanSweeper(
            consumer.app.backend.client,
            lambda: consumer_qos(consumer),
            consumer.app.backend.get_key_for_task,
            me=consumer.hostname,
            interval=interval,
            grace=2 * interval + 1,
        )
        parts.supervisor.periodic.append(self.sweeper.maybe_sweep)

    def end(self) -> None:
        parts = state.parts() if state.installed() else None
        if self.sweeper is not None and parts is not None:
            parts.supervisor.periodic.remove(self.sweeper.maybe_sweep)


class StreamStep(_ConsumerStep):
    """Publishes running prompts' output to Redis Streams (PromptHandle.stream)."""

    requires = (_CONNECTION,)
    streamer: OutputStreamer | None = None

    def begin(self, consumer: Any, parts: state.WorkerParts) -> None:
        if self.settings.stream_interval <= 0:
            return
        sup = parts.supervisor
        self.streamer = OutputStreamer(
            consumer.app.backend.client,
            sup.instance.partial,
            interval=self.settings.stream_interval,
            ttl=self.settings.result_expires,
        )
        self.streamer.start()
        sup.streamer = self.streamer

    def end(self) -> None:
        if self.streamer is not None:
            if state.installed():
                state.parts().supervisor.streamer = None
            self.streamer.stop()


class LeaseStep(_ConsumerStep):
    """Session leases: the keeper, its mailbox (the producers' requests, this worker's
    only) and its expiry check; the remote-control commands use the keeper too."""

    requires = ("toolfleet.workers.steps:HeartbeatStep",)

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.keeper: LeaseKeeper | None = None
        self.mailbox: LeaseMailbox | None = None
        if state.installed():  # built now: lease commands may come before start
            parts = state.parts()
            sup = parts.supervisor
            self.keeper = parts.leases = LeaseKeeper(
                sup,
                consumer.app.backend.client,
                sup.announce,
                workspace=parts.workspace,
                changes_ttl=self.settings.result_expires,
            )

    def begin(self, consumer: Any, parts: state.WorkerParts) -> None:
        if self.keeper is not None:
            parts.supervisor.periodic.append(self.keeper.check)
            keeper = self.keeper
            self.mailbox = LeaseMailbox(
                consumer.app.backend.client, consumer.hostname, keeper.take, keeper.drop
            )
            self.mailbox.start()

    def end(self) -> None:
        if self.mailbox is not None:
            self.mailbox.stop()
        if self.keeper is not None and state.installed():
            state.parts().supervisor.periodic.remove(self.keeper.check)
