"""Cancel prompts: a queued one never runs, a running one is interrupted."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from toolfleet.client.unavailable import redis_errors
from toolfleet.keys import CANCELLED

if TYPE_CHECKING:
    from toolfleet.client.fleet import Fleet

__all__ = ["cancel_prompts"]


def cancel_prompts(fleet: Fleet, prompt_ids: list[str], timeout: float = 1.0) -> dict[str, str]:
    """Cancel ``prompt_ids``; what became of each: "interrupted on WORKER", "done" (too
    late: it had finished), or "revoked" (queued or unknown: it will never run).

    Every worker hears Celery's revoke (a message it holds is dropped unrun) and
    ``tool_cancel`` (the one running the prompt interrupts its tool); the ids go to
    Redis too, where workers started later read them, and the result of a prompt not
    running anywhere is stored as revoked so that its handle raises PromptCancelled.
    """
    settings = fleet.settings
    app = fleet.app
    now = time.time()
    outcome: dict[str, str] = {}
    with redis_errors(settings):
        client = app.backend.client
        client.zadd(CANCELLED, {i: now + settings.result_expires for i in prompt_ids})
        client.zremrangebyscore(CANCELLED, "-inf", now)
        app.control.revoke(prompt_ids)
        # ask the workers that report health, and stop waiting once all of them answered;
        # with no health records (heartbeat off), every worker within ``timeout``
        nodes = sorted({h.worker for h in fleet.status()}) or None
        for prompt_id in prompt_ids:
            replies = app.control.broadcast(
                "tool_cancel",
                arguments={"prompt_id": prompt_id},
                reply=True,
                timeout=timeout,
                destination=nodes,
                limit=len(nodes) if nodes else None,
            )
            running = [node for reply in replies for node, r in reply.items() if "ok" in r]
            if running:
                outcome[prompt_id] = f"interrupted on {running[0]}"
                continue
            state = app.AsyncResult(prompt_id).state
            if state == "REVOKED":  # a worker holding its message dropped it
                outcome[prompt_id] = "revoked"
            elif state in ("SUCCESS", "FAILURE"):
                outcome[prompt_id] = "done"
            else:
                app.backend.mark_as_revoked(prompt_id, reason="cancelled")
                outcome[prompt_id] = "revoked"
    return outcome
