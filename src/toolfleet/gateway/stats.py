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
    """Every upstream's gateway figures, fleet-wide: its counters (requests, waited,
    retries, throttled, quota_refusals, sent, received, cost) and what is now waiting,
    in flight, and the concurrency ceiling (0: none)."""
    names = sorted(text(n) for n in client.smembers(GATEWAYS))
    found: dict[str, dict[str, float]] = {}
    for name in names:
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(gateway_key(name, "stats"))
        pipe.zcard(gateway_key(name, "queue"))
        pipe.zcount(gateway_key(name, "inflight"), time.time(), "+inf")
        pipe.get(gateway_key(name, "ceiling"))
        pipe.exists(gateway_key(name, "quota"))
        stats, waiting, inflight, ceiling, quota = pipe.execute()
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
