"""Processes that die with their parent: Linux's parent-death signal (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # looked up once, in the parent: a forked child then only makes the call
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return prctl


_PRCTL = _load_prctl()


def die_with_parent(sig: int) -> None:
    """Have ``sig`` sent to this process when its parent dies (a no-op off Linux).

    Linux sends it when the *thread* that forked this process ends: start such
    children from a thread that lives as long as the parent (its main thread)."""
    if _PRCTL is not None:
        with contextlib.suppress(OSError):
            _PRCTL(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
