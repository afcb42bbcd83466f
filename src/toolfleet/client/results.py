"""Many prompts' results at once: which are there (one MGET), and revoking late ones."""

from __future__ import annotations

import logging
from typing import Any

from toolfleet.client.protocols import Handle

__all__ = ["ready_ids", "revoke"]

log = logging.getLogger(__name__)

_READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def ready_ids(handles: list[Handle]) -> set[str]:
    """Ids of the handles whose result is there: one MGET on a key-value result backend
    (Redis) instead of one GET per handle; ``handle.ready()`` on anything else. The
    prompts of a chunk (``handle.chunk``) share its key: it is read once for all."""
    members: dict[Any, list[str]] = {}
    plain: list[Handle] = []
    for h in handles:
        chunk = getattr(h, "chunk", None)
        if chunk is None:
            plain.append(h)
        else:
            members.setdefault(chunk, []).append(h.id)
    ready = {h.id for h in plain if not hasattr(h, "async_result") and h.ready()}
    ready |= _ready([h for h in plain if hasattr(h, "async_result")] + list(members))
    return ready | {i for chunk, ids in members.items() if chunk.id in ready for i in ids}


def _ready(handles: list[Any]) -> set[str]:
    """Ids of ``handles`` (with an ``async_result``) whose result is there."""
    ready: set[str] = set()
    if not handles:
        return ready
    backend = getattr(getattr(handles[0], "async_result", None), "backend", None)
    mget = getattr(backend, "mget", None)
    key_for = getattr(backend, "get_key_for_task", None)
    decode = getattr(backend, "decode", None)
    if mget is None or key_for is None or decode is None:
        return {h.id for h in handles if h.ready()}
    for handle, raw in zip(handles, mget([key_for(h.id) for h in handles]), strict=True):
        if raw is None:
            continue
        try:
            state = decode(raw)["status"]
        except Exception:  # let get() say what is wrong with it
            state = "SUCCESS"
        if state in _READY_STATES:
            ready.add(handle.id)
    return ready


def revoke(handle: Handle) -> None:
    """Best effort: tell the workers to drop this prompt if it has not started (a
    multi-step item: send no further step)."""
    cancel = getattr(handle, "cancel", None)
    if cancel is not None:
        cancel()
        return
    carrier = getattr(handle, "chunk", handle)  # a chunk's prompt: the whole chunk
    revoke = getattr(getattr(carrier, "async_result", None), "revoke", None)
    if revoke is None:
        return
    try:
        revoke()
    except Exception as exc:  # the broker may be gone too; the run goes on
        log.warning("could not revoke prompt %s: %s", handle.id, exc)
