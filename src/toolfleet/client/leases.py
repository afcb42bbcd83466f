"""Session leases in Redis: which session holds which worker's instance, with a TTL."""

from __future__ import annotations

import json
import uuid
from typing import Any

from toolfleet.keys import (
    LEASE_REPLY_PREFIX,
    RedisLike,
    lease_key,
    leasebox_key,
    seq_key,
    session_key,
)
from toolfleet.models import InstanceHealth

__all__ = [
    "acquire",
    "ask_worker",
    "holder",
    "next_seq",
    "read_session",
    "release",
    "renew",
    "unleased",
    "write_session",
]


_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[2], ARGV[2])
  redis.call('pexpire', KEYS[3], ARGV[2])
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[2], KEYS[3])
  return redis.call('del', KEYS[1])
end
return 0
"""


_NEXT_SEQ = """
local n = redis.call('incr', KEYS[1])
redis.call('pexpire', KEYS[1], ARGV[1])
return n
"""


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


def acquire(client: RedisLike, worker: str, session: str, ttl: float) -> bool:
    """Lease ``worker`` to ``session`` if nobody holds it (one command)."""
    return bool(client.set(lease_key(worker), session, nx=True, px=_ms(ttl)))


def renew(client: RedisLike, worker: str, session: str, ttl: float) -> bool:
    """Extend the lease if ``session`` still holds it."""
    keys = [lease_key(worker), session_key(session), seq_key(session)]
    return bool(client.eval(_RENEW, 3, *keys, session, _ms(ttl)))


def release(client: RedisLike, worker: str, session: str) -> bool:
    """End the lease if ``session`` holds it; forget the session."""
    keys = [lease_key(worker), session_key(session), seq_key(session)]
    return bool(client.eval(_RELEASE, 3, *keys, session))


def next_seq(client: RedisLike, session: str, ttl: float) -> int:
    """The next sequence number of ``session``'s prompts (0, 1, ...), from one counter in
    Redis whichever process sends (one command); it lives as long as the session."""
    return int(client.eval(_NEXT_SEQ, 1, seq_key(session), _ms(ttl))) - 1


def holder(client: RedisLike, worker: str) -> str | None:
    """The session holding ``worker``, if any."""
    raw = client.get(lease_key(worker))
    return raw.decode() if isinstance(raw, bytes) else raw


def unleased(client: RedisLike, records: list[InstanceHealth]) -> list[InstanceHealth]:
    """``records`` with the session of every worker whose lease key is free cleared: a
    health record names the session for up to a heartbeat's debounce after it ended,
    the lease key is the truth (one MGET)."""
    leased = [r for r in records if r.session is not None]
    if not leased:
        return records
    free = {
        r.worker
        for r, held in zip(leased, client.mget([lease_key(r.worker) for r in leased]), strict=True)
        if held is None
    }
    return [r.model_copy(update={"session": None}) if r.worker in free else r for r in records]


def write_session(client: RedisLike, session: str, info: dict[str, Any], ttl: float) -> None:
    """Record where ``session`` lives, so other processes (the CLI) can send into it."""
    client.set(session_key(session), json.dumps(info), px=_ms(ttl))


def read_session(client: RedisLike, session: str) -> dict[str, Any] | None:
    """What :func:`write_session` stored, or None once the session ended or expired."""
    raw = client.get(session_key(session))
    return None if raw is None else dict(json.loads(raw))


def ask_worker(
    client: RedisLike,
    worker: str,
    op: str,
    session: str,
    base: str | None = None,
    wait: float = 5.0,
) -> dict[str, Any] | None:
    """Send a lease request (``take`` or ``drop``) to ``worker``'s own mailbox: only that
    worker reads it, so its cost does not grow with the fleet (a broadcast is decoded by
    every worker). With ``wait`` its answer, None if none came by then; without, None
    at once. The mailbox expires a minute after the last request (a worker gone)."""
    reply = f"{LEASE_REPLY_PREFIX}{uuid.uuid4().hex}" if wait > 0 else None
    request = {"op": op, "session": session, "base": base, "reply": reply}
    box = leasebox_key(worker)
    pipe = client.pipeline(transaction=False)
    pipe.rpush(box, json.dumps(request))
    pipe.expire(box, 60)
    pipe.execute()
    if reply is None:
        return None
    popped = client.blpop([reply], timeout=wait)
    if popped is None:
        return None
    answer: dict[str, Any] = json.loads(popped[1])
    return answer
