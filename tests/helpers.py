"""Helpers for every test tier: wait for an event instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy, for up to ``timeout`` s.

    Returns that value, or the last (falsy) one when the time is up. An exception
    (e.g. a failed assertion inside ``predicate``) ends the wait at once.
    """
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= end:
            return value
        time.sleep(interval)


def eventually(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    what: str | Callable[[], str] = "the condition",
    interval: float = 0.05,
) -> T:
    """Wait until ``predicate`` returns something truthy and return it; fail naming
    ``what`` (a string, or a function giving one then, e.g. what is still missing)
    and the last value after ``timeout`` s."""
    value = wait_until(predicate, timeout, interval)
    if not value:
        said = what() if callable(what) else what
        raise AssertionError(f"not within {timeout:g} s: {said} (last: {value!r})")
    return value
