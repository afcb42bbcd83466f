"""The prompt task: thin; the work is the supervisor's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import Task, shared_task

from .broker import PROMPT_TASK
from .workers import state

if TYPE_CHECKING:
    from .workers.supervisor import Supervisor

__all__ = ["PromptTask", "prompt"]


class PromptTask(Task):  # type: ignore[misc]
    """Base class giving tasks this worker's supervisor (and through it, the tool)."""

    @property
    def supervisor(self) -> Supervisor:
        return state.current()


@shared_task(bind=True, base=PromptTask, name=PROMPT_TASK)  # type: ignore[untyped-decorator]
def prompt(
    self: PromptTask,
    text: str,
    timeout: float | None = None,
    session: str | None = None,
    seq: int | None = None,
) -> dict[str, Any]:
    """Type ``text`` into this worker's tool and return its PromptResult as a dict."""
    result = self.supervisor.run(
        text, timeout=timeout, prompt_id=self.request.id, session=session, seq=seq
    )
    return result.model_dump(mode="json")
