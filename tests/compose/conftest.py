"""The compose stack for real (``./run test-compose``): collected only when
scripts/compose-engine has named an engine (COMPOSE_ENGINE); one stack for the module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .stack import Stack

collect_ignore_glob = [] if os.environ.get("COMPOSE_ENGINE") else ["test_*.py"]


_failed: list[BaseException] = []


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    if _failed:  # pytest sets a failed session fixture up again for every test: once is enough
        pytest.fail(f"the stack could not be built or brought up: {_failed[0]}", pytrace=False)
    stack = Stack.from_environment()
    stack.clear()
    try:
        stack.build()
        stack.up()
        yield stack
    except AssertionError as exc:
        _failed.append(exc)
        raise
    finally:
        stack.down()
        stack.clear()
        stack.forget()
