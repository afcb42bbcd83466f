"""The fleet-wide admission of model requests to one upstream, kept in Redis: a queue
served in arrival order, request and token windows, and an AIMD concurrency ceiling."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from toolfleet.gateway.upstream import Upstream
from toolfleet.keys import GATEWAYS, gateway_key, text

__all__ = ["MARGIN", "Governor", "Ticket"]

#: seconds the gateway's windows are longer than the provider's, so that a request still
#: in transit when the gateway's window moves on falls in the provider's window too
MARGIN = 1
#: a waiter that has not asked for its turn for this long is gone (its process died)
STALE = 5.0
#: a request in flight is counted this long unless renewed while its answer streams
SLOT_TTL = 120.0
#: the ceiling an upstream without a configured concurrency climbs back to
OPEN_CEILING = 64
#: seconds between two waiters' looks at the queue
POLL = 0.02

# Whose turn it is: drops waiters that stopped asking, enqueues the caller on its first
# call, then says: 1 (go), or 0 and why not (seconds of a hold-off; -N: N others are
# ahead; 0: the ceiling of requests in flight is reached).
_TURN = """
local now = tonumber(ARGV[2])
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
for _, t in ipairs(stale) do
  redis.call('ZREM', KEYS[1], t)
  redis.call('ZREM', KEYS[2], t)
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
local hold = tonumber(redis.call('GET', KEYS[5]) or '0')
if hold > now then return {0, tostring(hold - now)} end
local ahead = redis.call('ZRANK', KEYS[1], ARGV[1])
if ahead > 0 then return {0, tostring(-ahead)} end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local cap = tonumber(redis.call('GET', KEYS[4]) or ARGV[4])
if cap > 0 and redis.call('ZCARD', KEYS[3]) >= math.max(1, math.floor(cap)) then
  return {0, '0'}
end
return {1, '0'}
"""

# The caller's request goes: counted in flight until ARGV[2], out of the queue.
_GO = """
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], 'requests', 1)
return 1
"""

# A request ended. ARGV: ticket, outcome (ok | throttled), now, hold-off seconds,
# configured concurrency (0: none), open ceiling. ok: the ceiling rises by 1/ceiling
# (additive increase: one more a round), and goes when it reaches the configured or open
# one; throttled: the ceiling halves (at most once a second: answers to one burst count
# once), never under 1, and every gateway holds off new requests as the provider said.
_END = """
redis.call('ZREM', KEYS[1], ARGV[1])
local now = tonumber(ARGV[3])
local top = tonumber(ARGV[5])
if top <= 0 then top = tonumber(ARGV[6]) end
local cap = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[2] == 'ok' then
  if cap > 0 then
    cap = cap + 1 / cap
    if cap >= top then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], cap) end
  end
  return 1
end
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
if now - last >= 1 then
  if cap <= 0 then cap = math.max(redis.call('ZCARD', KEYS[1]) + 1, 1) end
  if cap > top then cap = top end
  redis.call('SET', KEYS[2], math.max(1, cap / 2))
  redis.call('SET', KEYS[4], now)
end
local wait = tonumber(ARGV[4])
if wait > 0 then
  local hold = tonumber(redis.call('GET', KEYS[3]) or '0')
  if now + wait > hold then redis.call('SET', KEYS[3], now + wait, 'PX', math.ceil(wait * 1000)) end
end
return 0
"""


@dataclass
class Ticket:
    """One request's place: in the queue while it waits, in flight once admitted."""

    id: str
    tokens: int
    admitted: float = 0.0
    renewed: float = 0.0


class Governor:
    """Admits one gateway's requests to ``upstream`` as the fleet's limits allow.

    Every gateway on every host admits through the same Redis records: a request waits
    its turn in one queue (in arrival order), then for room in the request and token
    windows and under the ceiling of requests in flight. It is never failed for waiting.
    """

    def __init__(self, client: Any, upstream: Upstream) -> None:
        self.client = client
        self.upstream = upstream
        name = upstream.name
        self.keys = {
            part: gateway_key(name, part)
            for part in ("queue", "seen", "inflight", "ceiling", "hold", "stats", "cut", "quota")
        }
        storage = RedisStorage(
            "redis://", connection_pool=client.connection_pool, key_prefix="toolfleet:gateway"
        )
        self.windows = MovingWindowRateLimiter(storage)
        window = upstream.window + MARGIN
        self.rpm = RateLimitItemPerSecond(upstream.rpm, window) if upstream.rpm else None
        self.tpm = RateLimitItemPerSecond(upstream.tpm, window) if upstream.tpm else None
        self._turn = client.register_script(_TURN)
        self._go = client.register_script(_GO)
        self._end = client.register_script(_END)
        client.sadd(GATEWAYS, name)

    def _k(self, *parts: str) -> list[str]:
        return [self.keys[p] for p in parts]

    def quota_refused(self) -> str | None:
        """The provider's words when it said this upstream's quota is exhausted (for
        ``quota_pause`` seconds), else None."""
        said = self.client.get(self.keys["quota"])
        return None if said is None else text(said, "replace")

    def refuse_quota(self, said: str) -> None:
        """Stop new work on this upstream for ``quota_pause`` seconds."""
        self.client.set(self.keys["quota"], said[:500], px=int(self.upstream.quota_pause * 1000))
        self.count("quota_refusals")

    def count(self, field: str, amount: float = 1) -> None:
        self.count_many({field: amount})

    def count_many(self, amounts: dict[str, float]) -> None:
        """Add to the upstream's counters (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for field, amount in amounts.items():
            if isinstance(amount, float) and not amount.is_integer():
                pipe.hincrbyfloat(self.keys["stats"], field, amount)
            elif amount:
                pipe.hincrby(self.keys["stats"], field, int(amount))
        pipe.execute()

    def admit(self, tokens: int) -> Ticket:
        """Wait for this request's turn and room under every limit, however long that
        takes (the prompt's own timeout is what ends a wait too long); its ticket.
        ``tokens``: the request's estimated size, held in the token window."""
        ticket = Ticket(uuid.uuid4().hex, max(1, tokens))
        counted = False
        try:
            while True:
                wait = self._try(ticket)
                if wait <= 0:
                    return ticket
                if not counted:
                    self.count("waited")
                    counted = True
                time.sleep(wait)
        except BaseException:
            self.client.zrem(self.keys["queue"], ticket.id)
            raise

    def _try(self, ticket: Ticket) -> float:
        """0 when the request went; else seconds to wait before asking again."""
        now = time.time()
        cap = self.upstream.concurrency or 0
        ok, why = self._turn(
            keys=self._k("queue", "seen", "inflight", "ceiling", "hold"),
            args=[ticket.id, now, STALE, cap],
        )
        if not int(ok):
            held = float(text(why))
            if held > 0:  # every gateway holds off, as the provider said
                return min(held, 1.0)
            # behind others: the further back, the less often it asks (Redis's load
            # stays flat however many wait)
            return min(POLL * (1 - held), 1.0)
        name = self.upstream.name
        for item, cost in ((self.rpm, 1), (self.tpm, ticket.tokens)):
            if item is None:
                continue
            cost = min(cost, item.amount)  # a request larger than the window still goes
            if not self.windows.hit(item, name, "window", cost=cost):
                stats = self.windows.get_window_stats(item, name, "window")
                return min(max(stats.reset_time - time.time(), POLL), 1.0)
        ticket.admitted = ticket.renewed = time.time()
        self._go(
            keys=self._k("queue", "seen", "inflight", "stats"), args=[ticket.id, now + SLOT_TTL]
        )
        return 0.0

    def renew(self, ticket: Ticket) -> None:
        """Keep a long answer's request counted in flight (every 10 s at most)."""
        now = time.time()
        if now - ticket.renewed >= 10:
            ticket.renewed = now
            self.client.zadd(self.keys["inflight"], {ticket.id: now + SLOT_TTL}, xx=True)

    def done(self, ticket: Ticket, throttled: bool = False, hold: float = 0.0) -> None:
        """The request ended: out of flight; a throttled one lowers the ceiling and holds
        every gateway off for ``hold`` seconds, an ok one raises the ceiling."""
        self._end(
            keys=self._k("inflight", "ceiling", "hold", "cut"),
            args=[
                ticket.id,
                "throttled" if throttled else "ok",
                time.time(),
                hold,
                self.upstream.concurrency or 0,
                OPEN_CEILING,
            ],
        )

    def tokens_used(self, ticket: Ticket, tokens: int) -> None:
        """The answer's real size: what the estimate missed goes into the token window
        (as far as it has room: the next requests wait for the rest)."""
        if self.tpm is not None and tokens > ticket.tokens:
            extra = min(tokens - ticket.tokens, self.tpm.amount)
            self.windows.hit(self.tpm, self.upstream.name, "window", cost=extra)
