"""Many prompts' results at once: which are there (one MGET), and revoking late ones."""

from __future__ import annotations

import logging

from toolfleet.client.protocols import Handle

__all__ = ["ready_ids", "revoke"]

log = logging.getLogger(__name__)

_READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def ready_ids(handles: list[Handle]) -> set[str]:
    """Ids of the handles whose result is there: one MGET on a key-value result backend
    (Redis) instead of one GET per handle; ``handle.ready()`` on anything else."""
    ready = {h.id for h in handles if not hasattr(h, "async_result") and h.ready()}
    handles = [h for h in handles if hasattr(h, "async_result")]  # prompts, not items
    if not handles:
        return ready
    backend = getattr(getattr(handles[0], "async_result", None), "backend", None)
    mget = getattr(backend, "mget", None)
    key_for = getattr(backend, "get_key_for_task", None)
    decode = getattr(backend, "decode", None)
    if mget is None or key_for is None or decode is None:
        return ready | {h.id for h in handles if h.ready()}
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
    revoke = getattr(getattr(handle, "async_result", None), "revoke", None)
    if revoke is None:
        return
    try:
        revoke()
    except Exception as exc:  # the broker may be gone too; the run goes on
        log.warning("could not revoke prompt %s: %s", handle.id, exc)
