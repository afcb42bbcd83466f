"""The compose stack for real (``./run test-compose``): collected only when
scripts/compose-engine has named an engine (COMPOSE_ENGINE); one stack for the module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .stack import Stack

collect_ignore_glob = [] if os.environ.get("COMPOSE_ENGINE") else ["test_*.py"]


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    stack = Stack.from_environment()
    stack.clear()
    stack.build()
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        stack.clear()
        stack.forget()
