"""The model gateways' figures per upstream, fleet-wide, as Redis holds them."""

from __future__ import annotations

import time
from typing import Any

from toolfleet.keys import GATEWAYS, gateway_key, text

__all__ = ["COUNTERS", "upstream_stats"]

#: what each upstream's gateways count, fleet-wide: model calls sent, calls that waited
#: for their turn, retries, "slow down" answers hidden from the agents, quota refusals,
#: tokens in and out, and their cost
COUNTERS = (
    "requests",
    "waited",
    "retries",
    "throttled",
    "quota_refusals",
    "sent",
    "received",
    "cost",
)


def upstream_stats(client: Any) -> dict[str, dict[str, float]]:
    """Every upstream's gateway figures, fleet-wide, in two round trips whatever their
    number: its counters (:data:`COUNTERS`) and what is now waiting, in flight, the
    concurrency ceiling (0: none) and whether its quota is exhausted (1)."""
    names = sorted(text(n) for n in client.smembers(GATEWAYS))
    if not names:
        return {}
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(gateway_key(name, "stats"))
        pipe.zcard(gateway_key(name, "queue"))
        pipe.zcount(gateway_key(name, "inflight"), now, "+inf")
        pipe.get(gateway_key(name, "ceiling"))
        pipe.exists(gateway_key(name, "quota"))
    replies = pipe.execute()
    found: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        stats, waiting, inflight, ceiling, quota = replies[5 * i : 5 * i + 5]
        figures = dict.fromkeys(COUNTERS, 0.0)
        figures.update({text(k): float(text(v)) for k, v in stats.items()})
        figures.update(
            waiting=waiting,
            inflight=inflight,
            ceiling=float(text(ceiling)) if ceiling else 0.0,
            quota_exhausted=float(bool(quota)),
        )
        found[name] = figures
    return found
