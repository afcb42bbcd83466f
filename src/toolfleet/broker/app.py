"""The fleet's Celery app: configuration, queues, serialisation (``celery -A toolfleet.broker``).

Configuration is read from the environment when the app is first configured, not at
import time. Worker parts (the tool bootstep, remote-control commands) are named by
string and loaded only when a worker starts, so producers never import the tool layer.
"""

from __future__ import annotations

from typing import Any

import click
from celery import Celery
from kombu.entity import Queue

from toolfleet.broker.internals import self_check
from toolfleet.settings import Settings

__all__ = [
    "CHECK_TASK",
    "CHUNK_PROGRESS",
    "CHUNK_TASK",
    "PRODUCER_CONFIG",
    "PROMPT_TASK",
    "add_worker_steps",
    "app",
    "celery_config",
    "direct_queue",
    "make_app",
    "shared_queue",
]

PROMPT_TASK = "toolfleet.prompt"
#: several prompts in one message, run in order on one instance (``Fleet.submit_many``)
CHUNK_TASK = "toolfleet.prompts"
#: a session's check command, run in its instance's worktree (``Session.check``)
CHECK_TASK = "toolfleet.check"
#: the state a chunk's worker records as it runs it, ``{"done": N}``: how many of its
#: prompts have finished (so a producer tells a chunk at work from a lost one)
CHUNK_PROGRESS = "PROGRESS"


def shared_queue(profile: str) -> str:
    """Name of the queue every worker of ``profile`` consumes."""
    return f"toolfleet.{profile}"


def direct_queue(worker: str) -> Queue:
    """The queue only ``worker`` (a node name ``name@host``) consumes."""
    from celery.utils.nodenames import worker_direct

    queue: Queue = worker_direct(worker)
    return queue


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for the fleet: JSON only, late acks, prefetch 1, events on."""
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout,
        # restore a lost worker's unacked prompts promptly rather than after minutes
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
        # the restore lock of a worker killed while holding it must not block restores
        # for kombu's default 5 minutes
        "unacked_mutex_expire": 15,
    }
    backend: dict[str, Any] = {"retry_policy": {"timeout": 5.0}}
    if settings.sentinel_master:  # Celery's and kombu's option for sentinel:// URLs
        transport["master_name"] = backend["master_name"] = settings.sentinel_master
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "broker_transport_options": transport,
        "result_backend_transport_options": backend,
        # a result that cannot be stored (Redis restarting) is retried until it can be:
        # the prompt ran, so its answer must not be lost (nor the prompt run again)
        "result_backend_always_retry": True,
        "result_backend_max_retries": 1000,
        "result_backend_max_sleep_between_retries_ms": 2000,
        "broker_connection_retry_on_startup": True,
        # a publish rides out a Redis restart or a Sentinel failover (about 16 s of
        # retries) instead of failing after Celery's default 0.6 s
        "task_publish_retry_policy": {
            "max_retries": 18,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 1,
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "task_send_sent_event": settings.task_events,
        "worker_send_task_events": settings.task_events,
        "worker_prefetch_multiplier": 1,
        "worker_direct": True,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_default_queue": "toolfleet.default",
        "task_create_missing_queues": True,
        "result_expires": settings.result_expires,
        "broker_heartbeat": 0,
        "toolfleet_settings": settings,
    }


#: a producer gives up on an unreachable result backend after about 15 s (RedisUnavailable)
#: where a worker, whose answer must not be lost, retries for half an hour
PRODUCER_CONFIG: dict[str, Any] = {"result_backend_max_retries": 20}


def add_worker_steps(app: Celery) -> None:
    """Give ``app``'s workers the tool step and the consumer steps, by name (loaded only
    when a worker starts, so producers never import them)."""
    app.steps["worker"].add("toolfleet.workers.steps:ToolStep")
    for step in ("HeartbeatStep", "SweepStep", "LeaseStep", "StreamStep"):
        app.steps["consumer"].add(f"toolfleet.workers.steps:{step}")
    app.steps["consumer"].add("toolfleet.workers.reconnect:RestoreOnReconnect")


def make_app(
    settings: Settings | None = None,
    *,
    main: str = "toolfleet",
    overrides: dict[str, Any] | None = None,
) -> Celery:
    """A Celery app for the fleet; ``settings`` default to the environment's, read lazily;
    ``overrides`` change the configuration (e.g. :data:`PRODUCER_CONFIG`)."""
    app = Celery(
        main,
        set_as_current=False,
        include=["toolfleet.workers.tasks", "toolfleet.workers.checking"],
        # one Redis client per channel, not per command
        amqp="toolfleet.broker.transport:FleetAMQP",
    )

    def configure(sender: Celery, **_: Any) -> None:
        config = {**celery_config(settings or Settings.from_env()), **(overrides or {})}
        self_check(config["broker_transport_options"])
        sender.conf.update(config)

    app.on_configure.connect(configure, weak=False)
    add_worker_steps(app)
    app.user_options["worker"].add(
        click.Option(["--profile"], default=None, help="Tool profile this worker runs.")
    )
    return app


#: the app ``celery -A toolfleet.broker`` and ``toolfleet worker`` use
app = make_app()
