"""How a session ended, as its producer says: the worker records the session's change only
while the mark says keep, so a worker that froze or was cut off past its producer's
patience never records a stale change (a fencing token, checked in one script)."""

from __future__ import annotations

from toolfleet.keys import CHANGES_INDEX, RedisLike, change_key, end_key, text
from toolfleet.models import Changes

__all__ = [
    "DISCARD",
    "FAILED",
    "KEEP",
    "RECORDED",
    "end_mark",
    "fail_if_kept",
    "give_up",
    "mark_end",
    "record_if_kept",
]

#: the producer wants the change recorded
KEEP = "keep"
#: the producer gave up on the session: nothing of it is recorded
DISCARD = "discard"
#: the worker recorded the change
RECORDED = "recorded"
#: the worker could not commit or push it: ``failed:<why>``
FAILED = "failed:"

#: how long a mark is kept (a worker frozen for longer finds none: discard)
MARK_TTL_MS = 86_400_000

_RECORD = """
if redis.call('get', KEYS[1]) ~= 'keep' then return 0 end
redis.call('set', KEYS[2], ARGV[1], 'px', ARGV[2])
redis.call('zadd', KEYS[3], ARGV[3], ARGV[4])
redis.call('set', KEYS[1], 'recorded', 'px', ARGV[5])
return 1
"""

_FAIL = """
if redis.call('get', KEYS[1]) ~= 'keep' then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
return 1
"""

_GIVE_UP = """
local mark = redis.call('get', KEYS[1])
if mark == 'recorded' or (mark and string.sub(mark, 1, 7) == 'failed:') then return mark end
redis.call('set', KEYS[1], 'discard', 'px', ARGV[1])
return 'discard'
"""


def mark_end(client: RedisLike, session: str, keep: bool) -> None:
    """The producer's word as it releases ``session``: keep its change, or discard it."""
    client.set(end_key(session), KEEP if keep else DISCARD, px=MARK_TTL_MS)


def end_mark(client: RedisLike, session: str) -> str | None:
    """The mark of ``session`` now (None: its producer said nothing, or went away)."""
    raw = client.get(end_key(session))
    return None if raw is None else text(raw)


def record_if_kept(client: RedisLike, record: Changes, ttl: float) -> bool:
    """Write the change record (and index it) only if its session's mark still says keep;
    the mark then says recorded. False: the producer gave up on it meanwhile."""
    keys = [end_key(record.id), change_key(record.id), CHANGES_INDEX]
    args = [record.model_dump_json(), max(1, int(ttl * 1000)), record.created_at, record.id]
    return bool(client.eval(_RECORD, 3, *keys, *args, MARK_TTL_MS))


def fail_if_kept(client: RedisLike, session: str, why: str) -> None:
    """Say that the change of ``session`` could not be committed or pushed (its producer
    stops waiting for it), unless the producer gave up on it already."""
    client.eval(_FAIL, 1, end_key(session), FAILED + why[:500], MARK_TTL_MS)


def give_up(client: RedisLike, session: str) -> str:
    """The producer stops waiting: the mark becomes discard unless the worker recorded
    the change or failed already; the mark as it ends."""
    return text(client.eval(_GIVE_UP, 1, end_key(session), MARK_TTL_MS))
