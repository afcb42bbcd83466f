"""The broker adapter: the Celery app (``celery -A toolfleet.broker``), the Redis transport
and every use of kombu's private internals."""

from toolfleet.broker.app import (
    CHECK_TASK,
    CHUNK_PROGRESS,
    CHUNK_TASK,
    PRODUCER_CONFIG,
    PROMPT_TASK,
    app,
    celery_config,
    direct_queue,
    make_app,
    shared_queue,
)

__all__ = [
    "CHECK_TASK",
    "CHUNK_PROGRESS",
    "CHUNK_TASK",
    "PRODUCER_CONFIG",
    "PROMPT_TASK",
    "app",
    "celery_config",
    "direct_queue",
    "make_app",
    "shared_queue",
]
