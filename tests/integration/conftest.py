"""Integration fixtures: a real redis-server on a free port, real worker processes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from toolfleet import Settings
from toolfleet.broker.app import add_worker_steps
from toolfleet.broker.app import celery_config as fleet_config
from toolfleet.cli.local import EmbeddedRedis

from ..programs import fake_openai
from ..programs.fakeserver import stop_serving
from .procs import Workers

_db = itertools.count(1)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


def _fresh_settings(server: EmbeddedRedis, **fields: object) -> Settings:
    db = next(_db) % 15 + 1  # db 0 is the pytest-celery worker's
    url = f"redis://127.0.0.1:{server.port}/{db}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return Settings(broker_url=url, heartbeat_interval=0.5, **fields)  # type: ignore[arg-type]


@pytest.fixture
def settings(redis_server: EmbeddedRedis) -> Settings:
    """Settings on a Redis database of its own."""
    return _fresh_settings(redis_server)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    """Start real workers with ``workers.start(profile, n)``; all are stopped afterwards."""
    fleet = Workers(settings, tmp_path)
    yield fleet
    assert fleet.close() == set(), "processes left running"


@pytest.fixture(scope="module")
def module_workers(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """Like ``workers``, shared by the tests of one module."""
    # working in the session's temporary folder: every test's tmp_path is inside it, so
    # confined tools of the module's workers see and write the files of each test
    fleet = Workers(
        _fresh_settings(redis_server),
        tmp_path_factory.mktemp("logs"),
        work_dir=tmp_path_factory.getbasetemp(),
    )
    yield fleet
    assert fleet.close() == set(), "processes left running"


# ---- pytest-celery: an in-process worker (threads pool) on the same real Redis ----
@pytest.fixture(scope="session")
def celery_config(redis_server: EmbeddedRedis) -> dict[str, object]:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return fleet_config(Settings(broker_url=url, heartbeat_interval=0.5))


@pytest.fixture(scope="session")
def celery_includes() -> list[str]:
    return ["toolfleet.workers.tasks"]


@pytest.fixture(scope="session")
def celery_session_app(celery_session_app):  # type: ignore[no-untyped-def]
    """pytest-celery's app, with the toolfleet bootstep its worker needs."""
    add_worker_steps(celery_session_app)
    return celery_session_app


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    return "threads"


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict[str, object]:
    return {"profile": "python", "concurrency": 1}


@pytest.fixture
def server() -> Iterator[fake_openai.FakeOpenAI]:
    """The fake OpenAI-compatible model server (aider's), on a free port; stopped after
    the test, with any request it held let go."""
    srv, thread = fake_openai.serve(0)
    yield srv
    stop_serving(srv, thread)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Where a test makes its git repository (not made yet)."""
    return tmp_path / "repo"
