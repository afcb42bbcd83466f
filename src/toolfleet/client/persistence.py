"""Whether the fleet's Redis keeps what it holds (queued prompts) across its restart."""

from __future__ import annotations

from typing import Any

import redis

__all__ = ["persistence"]


def persistence(client: Any) -> str:
    """What ``client``'s Redis keeps on a restart, in words for ``toolfleet status``."""
    try:
        found = {
            name: str(client.config_get(name).get(name, ""))
            for name in ("appendonly", "appendfsync", "save")
        }
    except redis.ResponseError:  # CONFIG renamed or refused (managed services)
        return "persistence unknown (CONFIG is refused)"
    if found["appendonly"] == "yes":
        return f"persistent (append-only file, fsync {found['appendfsync']})"
    if found["save"].strip():
        return f"snapshots only (save {found['save']}): prompts queued since the last are lost"
    return "NOT persistent: prompts queued are lost when it restarts"
