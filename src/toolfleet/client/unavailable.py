"""Redis trouble (refused, unreachable, wrong password) as one RedisUnavailable error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from toolfleet.errors import RedisUnavailable
from toolfleet.settings import Settings, redact_url

__all__ = ["ensure_reachable", "redis_errors", "unavailable"]


def _where(settings: Settings) -> str:
    broker = redact_url(settings.broker_url)
    if settings.result_backend == settings.broker_url:
        return broker
    return f"{broker} (results at {redact_url(settings.result_backend)})"


def _root(exc: BaseException) -> BaseException:
    """The Redis error under Celery's and kombu's wrappers."""
    import redis

    seen = exc
    while not isinstance(seen, redis.RedisError):
        nxt = seen.__cause__ or seen.__context__
        if nxt is None:
            return exc
        seen = nxt
    return seen


def unavailable(exc: BaseException, settings: Settings) -> RedisUnavailable | None:
    """The one-line error for ``exc`` if it means Redis cannot be used, else None."""
    import redis
    from kombu.exceptions import OperationalError

    root = _root(exc)
    if not isinstance(root, redis.RedisError | OperationalError):
        return None
    from redis.sentinel import MasterNotFoundError

    if isinstance(root, MasterNotFoundError):  # its text lists every client's repr
        master = settings.sentinel_master
        return RedisUnavailable(
            f"cannot use Redis at {_where(settings)}: no sentinel answered with a master "
            f"named {master!r} (are the sentinels up, and is TOOLFLEET_SENTINEL_MASTER right?)"
        )
    detail = " ".join(str(root).split()) or type(root).__name__
    if isinstance(root, redis.AuthenticationError) or "AUTH" in detail.upper():
        return RedisUnavailable(f"Redis at {_where(settings)} refused the credentials: {detail}")
    return RedisUnavailable(f"cannot use Redis at {_where(settings)}: {detail}")


@contextmanager
def redis_errors(settings: Settings) -> Iterator[None]:
    """Raise RedisUnavailable (one line) for any error that means Redis cannot be used."""
    try:
        yield
    except RedisUnavailable:
        raise
    except Exception as exc:
        mapped = unavailable(exc, settings)
        if mapped is None:
            raise
        raise mapped from exc


def ensure_reachable(settings: Settings, timeout: float = 3.0) -> None:
    """PING the broker and the result backend once, failing fast with RedisUnavailable
    (Celery would retry for seconds and then print a traceback)."""
    from toolfleet.redisconn import redis_client

    urls = dict.fromkeys([settings.broker_url, settings.result_backend])
    with redis_errors(settings):
        for url in urls:
            if not url.startswith(("redis://", "rediss://", "unix://", "sentinel://")):
                continue  # another kind of broker: Celery reports on its own
            client = redis_client(
                url,
                settings.sentinel_master,
                socket_connect_timeout=timeout,
                socket_timeout=timeout,
            )
            try:
                client.ping()
            finally:
                client.close()
