"""Where toolfleet keeps its records in Redis: every key name, and the commands it uses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

__all__ = [
    "CANCELLED",
    "CHANGES_INDEX",
    "CHANGE_PREFIX",
    "CLAIM_PREFIX",
    "END_PREFIX",
    "FREE_PREFIX",
    "GATEWAYS",
    "GATEWAY_PREFIX",
    "HEALTH_PREFIX",
    "IDLE_PREFIX",
    "LEASEBOX_PREFIX",
    "LEASE_PREFIX",
    "LEASE_REPLY_PREFIX",
    "RR_PREFIX",
    "RUNS",
    "RUN_PREFIX",
    "SESSION_PREFIX",
    "STREAM_END",
    "STREAM_PREFIX",
    "SWEEP_LOCK",
    "WORKERS",
    "RedisLike",
    "change_key",
    "claim_key",
    "end_key",
    "free_key",
    "gateway_key",
    "health_key",
    "idle_key",
    "lease_key",
    "leasebox_key",
    "rr_key",
    "run_key",
    "seq_key",
    "session_key",
    "stream_key",
    "text",
]

#: a worker's health record (JSON, TTL 3 heartbeat intervals)
HEALTH_PREFIX = "toolfleet:health:"
#: the registry of workers: a sorted set, worker -> when its health record expires
#: (Unix time); health records are found through it, never by scanning the backend
WORKERS = "toolfleet:workers"
#: the session holding a worker (TTL: the session's)
LEASE_PREFIX = "toolfleet:lease:"
#: a session's worker and profile, for other processes to send into it
SESSION_PREFIX = "toolfleet:session:"
#: the round-robin turn of a profile, shared by all producers
RR_PREFIX = "toolfleet:rr:"
#: per profile, a list a worker pushes its name on when its instance becomes free (ready,
#: no session): producers waiting for a session wake on it instead of polling
FREE_PREFIX = "toolfleet:free:"
#: a profile's free instances (a sorted set: worker -> when its record expires), kept by
#: their heartbeats, so that placing a session reads a few of them, not the whole fleet
IDLE_PREFIX = "toolfleet:idle:"
#: a worker's lease mailbox (a list: the producers' take and drop requests, only its
#: own), and the lists their answers come back on
LEASEBOX_PREFIX = "toolfleet:leasebox:"
LEASE_REPLY_PREFIX = "toolfleet:leasereply:"
#: which worker runs a prompt that may be redelivered (see workers/guard.py)
CLAIM_PREFIX = "toolfleet:claim:"
#: a change record (JSON) by its id, and the index of all of them (a sorted set by time)
CHANGE_PREFIX = "toolfleet:change:"
CHANGES_INDEX = "toolfleet:changes"
#: how a session ended for its producer: keep (record its change), discard, recorded,
#: failed:<why> (the fence between a producer and a worker that froze or was cut off)
END_PREFIX = "toolfleet:end:"
#: a running prompt's output as it comes (a Redis Stream; see workers/stream.py)
STREAM_PREFIX = "toolfleet:stream:"
#: the field of a prompt's last stream entry: the prompt ended
STREAM_END = "end"
#: prompts cancelled (a sorted set: id -> when the entry may go); workers load it into
#: Celery's revoked set when they start, so that none of them runs a cancelled prompt
CANCELLED = "toolfleet:cancelled"
#: held by the one worker sweeping dead workers' prompts this interval
SWEEP_LOCK = "toolfleet:orphan-sweep"
#: a bulk run's progress (a hash: total, done, failed, retried, rate, ...; TTL), written
#: by the producer running it, and the index of runs (a sorted set: run id -> when its
#: hash expires, Unix time); see client/progress.py
RUN_PREFIX = "toolfleet:run:"
RUNS = "toolfleet:runs"
#: the model gateway's records of one upstream (``toolfleet:gateway:NAME:PART``): its
#: queue of waiting requests, requests in flight, AIMD ceiling, hold-off time, quota
#: refusal and counters; and the set of upstream names the gateways have served
GATEWAY_PREFIX = "toolfleet:gateway:"
GATEWAYS = "toolfleet:gateways"


def text(value: Any, errors: str = "strict") -> str:
    """A Redis reply's value as text (clients without ``decode_responses`` give bytes)."""
    return value.decode(errors=errors) if isinstance(value, bytes) else str(value)


def health_key(worker: str) -> str:
    """The key of ``worker``'s health record."""
    return HEALTH_PREFIX + worker


def stream_key(prompt_id: str) -> str:
    """The Redis Stream carrying prompt ``prompt_id``'s output while it runs."""
    return STREAM_PREFIX + prompt_id


def lease_key(worker: str) -> str:
    """The key naming the session that holds ``worker``."""
    return LEASE_PREFIX + worker


def session_key(session: str) -> str:
    """The key describing ``session`` (its worker and profile)."""
    return SESSION_PREFIX + session


def seq_key(session: str) -> str:
    """The counter numbering ``session``'s prompts (one source for every producer)."""
    return SESSION_PREFIX + session + ":seq"


def rr_key(profile: str) -> str:
    """The round-robin counter of ``profile``."""
    return RR_PREFIX + profile


def free_key(profile: str) -> str:
    """The list announcing that an instance of ``profile`` became free."""
    return FREE_PREFIX + profile


def idle_key(profile: str) -> str:
    """The sorted set of ``profile``'s free instances."""
    return IDLE_PREFIX + profile


def leasebox_key(worker: str) -> str:
    """The list of lease requests for ``worker`` (its own mailbox)."""
    return LEASEBOX_PREFIX + worker


def change_key(change: str) -> str:
    """The key of a change record."""
    return CHANGE_PREFIX + change


def end_key(session: str) -> str:
    """The end mark of ``session`` (see :data:`END_PREFIX`)."""
    return END_PREFIX + session


def claim_key(prompt_id: str) -> str:
    """The claim of the worker running ``prompt_id``."""
    return CLAIM_PREFIX + prompt_id


def gateway_key(upstream: str, part: str) -> str:
    """The gateway's record ``part`` of ``upstream``."""
    return f"{GATEWAY_PREFIX}{upstream}:{part}"


def run_key(run_id: str) -> str:
    """The hash of bulk run ``run_id``'s progress."""
    return RUN_PREFIX + run_id


class RedisLike(Protocol):
    """The redis-py commands toolfleet uses (``redis.Redis``, Celery's backend client)."""

    def get(self, name: str) -> Any: ...
    def mget(self, keys: list[str]) -> list[Any]: ...
    def set(self, name: str, value: Any, *, nx: bool = False, px: int | None = None) -> Any: ...
    def delete(self, *names: str) -> Any: ...
    def exists(self, *names: str) -> Any: ...
    def incr(self, name: str, amount: int = 1) -> Any: ...
    def decr(self, name: str, amount: int = 1) -> Any: ...
    def pexpire(self, name: str, time: int) -> Any: ...
    def pttl(self, name: str) -> Any: ...
    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any: ...
    def scan_iter(self, match: str | None = None, count: int | None = None) -> Iterator[Any]: ...
    def hgetall(self, name: str) -> Any: ...
    def zrange(self, name: str, start: int, end: int, *, withscores: bool = False) -> Any: ...
    def zadd(self, name: str, mapping: dict[str, float]) -> Any: ...
    def zrem(self, name: str, *values: str) -> Any: ...
    def pipeline(self, transaction: bool = True) -> Any: ...
    def blpop(self, keys: list[str], timeout: float | None = ...) -> Any: ...
    def rpush(self, name: str, *values: Any) -> Any: ...
    def lock(
        self,
        name: str,
        timeout: float | None = ...,
        sleep: float = ...,
        blocking: bool = ...,
        blocking_timeout: float | None = ...,
        lock_class: Any | None = ...,
        thread_local: bool = ...,
    ) -> Any: ...
    def xadd(
        self,
        name: str,
        fields: Any,
        id: Any = ...,
        maxlen: int | None = ...,
        approximate: bool = ...,
    ) -> Any: ...
    def expire(self, name: str, time: int) -> Any: ...
    def zrangebyscore(self, name: str, min: float | str, max: float | str) -> Any: ...
    def zremrangebyscore(self, name: str, min: float | str, max: float | str) -> Any: ...
