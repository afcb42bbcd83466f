"""An item's check and repair turns: after its steps the check runs in its worktree; a
failing check goes back to the agent as a further step, up to ``repairs`` times."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from toolfleet.client.items import MapItem, fill_fields
from toolfleet.models import CheckResult, PromptResult
from toolfleet.profile import Profile

__all__ = ["DEFAULT_REPAIR", "CheckSpec", "as_steps", "check_and_repair"]

#: the repair step's default text (the profile field ``repair``'s default)
DEFAULT_REPAIR: str = Profile.model_fields["repair"].default


@dataclass(frozen=True)
class CheckSpec:
    """A map's check: ``command`` (``{path}`` ``{name}`` ``{stem}`` ``{index}`` filled in
    per item) run in the item's worktree after its steps, killed after ``timeout`` s;
    on failure up to ``repairs`` repair steps (``repair``: a template that may also use
    ``{check}``, the command, and ``{check_output}``, the tail of its output)."""

    command: str
    timeout: float = 600.0
    repairs: int = 0
    repair: str = DEFAULT_REPAIR

    def __post_init__(self) -> None:
        if not self.command.strip():
            raise ValueError("the check command is empty")
        if self.timeout <= 0:
            raise ValueError("the check timeout must be more than 0")
        if self.repairs < 0:
            raise ValueError("repairs must be at least 0")

    @classmethod
    def of(
        cls,
        profile: Profile | None,
        command: str | None = None,
        timeout: float | None = None,
        repairs: int | None = None,
    ) -> CheckSpec | None:
        """The check of a map: ``command``, ``timeout`` and ``repairs`` where given, else
        the profile's ``check``, ``check_timeout`` and ``repairs`` (None: no check)."""
        command = command or (profile.check if profile is not None else None)
        if not command:
            return None
        if profile is None:
            return cls(command, timeout or 600.0, repairs or 0)
        return cls(
            command,
            timeout or profile.check_timeout,
            profile.repairs if repairs is None else repairs,
            profile.repair,
        )

    def command_for(self, item: MapItem) -> str:
        return fill_fields(self.command, item)

    def repair_for(self, item: MapItem, result: CheckResult) -> str:
        """The repair step of ``item`` after the failing ``result``."""
        text = fill_fields(self.repair, item)
        return text.replace("{check}", result.command).replace("{check_output}", result.output)


def as_steps(items: Iterable[MapItem | str]) -> list[MapItem]:
    """``items`` as multi-step items (a plain prompt: one step): a check needs the
    session and worktree that steps run in."""
    made = []
    for index, it in enumerate(items):
        item = it if isinstance(it, MapItem) else MapItem(key=str(index), text=it, index=index)
        made.append(item if item.steps else dataclasses.replace(item, steps=(item.text,)))
    return made


def check_and_repair(
    session: Any, spec: CheckSpec, item: MapItem, step: Callable[[str], PromptResult]
) -> CheckResult:
    """Check ``item``'s worktree in ``session``; while it fails and turns are left, send
    the repair step through ``step`` (which keeps its answer) and check again. The last
    check (a repair step that fails ends the turns)."""
    command = spec.command_for(item)
    result: CheckResult = session.check(command, timeout=spec.timeout, turn=0)
    turns = 0
    while not result.passed and turns < spec.repairs:
        turns += 1
        if not step(spec.repair_for(item, result)).ok:
            break
        result = session.check(command, timeout=spec.timeout, turn=turns)
    return result
