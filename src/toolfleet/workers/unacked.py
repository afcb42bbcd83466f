"""kombu's unacknowledged messages in Redis: read their headers, put them back."""

from __future__ import annotations

import json
from typing import Any

from ..health import RedisLike

__all__ = ["restore", "unacked_headers"]


def unacked_headers(client: RedisLike, qos: Any) -> dict[Any, dict[str, Any]]:
    """Delivery tag -> task headers of every unacknowledged message (unreadable ones
    are left out). ``qos`` is the kombu Redis channel's QoS."""
    found = {}
    for tag, raw in client.hgetall(qos.unacked_key).items():
        try:
            headers = json.loads(raw)[0].get("headers") or {}
        except (ValueError, IndexError, AttributeError):
            continue
        found[tag] = headers
    return found


def restore(client: RedisLike, qos: Any, tag: Any) -> None:
    """Put one unacknowledged message back at the head of its queue, marked redelivered."""
    qos.restore_by_tag(tag, client, leftmost=True)
