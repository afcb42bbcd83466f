"""Redis clients toolfleet opens itself, for ``redis://``, ``rediss://``, ``unix://`` and
``sentinel://`` URLs alike."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlparse

import redis
from redis.sentinel import Sentinel

from toolfleet.errors import ConfigError

__all__ = [
    "SENTINEL_SCHEME",
    "SentinelMaster",
    "is_sentinel",
    "redis_client",
    "sentinel_hosts",
]

SENTINEL_SCHEME = "sentinel://"


def is_sentinel(url: str) -> bool:
    """True for a ``sentinel://host:port[;sentinel://host:port...]`` URL."""
    return url.startswith(SENTINEL_SCHEME)


def sentinel_hosts(url: str) -> list[tuple[str, int]]:
    """The sentinels a ``sentinel://`` URL names, in order (port 26379 by default)."""
    hosts = []
    for part in url.split(";"):
        parsed = urlparse(part.strip())
        if parsed.scheme != "sentinel" or not parsed.hostname:
            raise ConfigError(
                f"not a sentinel URL: {part.strip()!r} (expected sentinel://host:port, "
                "several joined by ';')"
            )
        hosts.append((parsed.hostname, parsed.port or 26379))
    return hosts


class SentinelMaster(redis.Redis):
    """The client of a master the sentinels name; closing it closes the connections to
    the sentinels too (left to the garbage collector, they are reported unclosed)."""

    sentinels: list[redis.Redis] | None = None

    def close(self) -> None:
        super().close()
        for sentinel in self.sentinels or []:
            sentinel.close()


def redis_client(url: str, master: str = "", **options: Any) -> redis.Redis:
    """A client of the Redis at ``url``; for a ``sentinel://`` URL, of the master the
    sentinels name ``master`` (it follows a failover). ``options`` are redis-py's
    (e.g. ``socket_timeout``)."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **options)
    if not master:
        raise ConfigError(
            "a sentinel:// URL needs the master's name: set TOOLFLEET_SENTINEL_MASTER"
        )
    first = urlparse(url.split(";")[0])
    db = int(first.path.strip("/") or 0)
    auth = {
        key: unquote(value)
        for key, value in (("username", first.username), ("password", first.password))
        if value
    }
    # redis-py types Sentinel from 8.2 on and not before: called through Any, the same
    # lines are clean with every release the range allows (an ignore would be unused on one
    # side and, for master_for's **auth, wrong on the other)
    sentinel_class: Any = Sentinel
    sentinels = sentinel_class(sentinel_hosts(url), **options)
    client: SentinelMaster = sentinels.master_for(master, redis_class=SentinelMaster, db=db, **auth)
    client.sentinels = list(sentinels.sentinels)
    return client
