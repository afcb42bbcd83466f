"""Items of a bulk run and how each ended; made from a template or from JSON lines."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from toolfleet.models import Changes, CheckResult, PromptResult, Usage

__all__ = [
    "TOOL_ERROR",
    "MapItem",
    "MapOutcome",
    "expand_steps",
    "expand_template",
    "fill_fields",
    "read_jsonl",
    "text_digest",
]

#: error_type of an item whose tool answered but reported failure (``ok`` false)
TOOL_ERROR = "ToolError"


@dataclass(frozen=True)
class MapItem:
    """One item of a bulk run; ``key`` names it in results and in the journal.

    An item is one prompt (``text``), or with ``steps`` several prompts run in order on
    one instance it holds exclusively (``text`` then shows them, one a line). ``paths``:
    the files it works on (``{path}`` of a template, or a JSONL line's): items sharing
    one never run at the same time in a map, and the first fills a check's ``{path}``.
    ``base``: the commit a worktree profile's instance starts it from (a redo).
    """

    key: str
    text: str
    profile: str | None = None
    timeout: float | None = None
    steps: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    index: int = 0
    base: str | None = None

    @property
    def digest(self) -> str:
        """What the journal keeps to notice that an item's prompts changed."""
        return text_digest("\x1e".join(self.steps) if self.steps else self.text)


@dataclass(frozen=True)
class MapOutcome:
    """How one item ended: its result (``ok`` or a tool error) or the error that stopped it."""

    key: str
    ok: bool
    result: PromptResult | None = None
    error_type: str | None = None
    error: str | None = None
    attempts: int = 1
    worker: str | None = None
    duration_ms: float = 0.0
    #: a multi-step item's results, one per step run (the last is ``result``)
    steps: tuple[PromptResult, ...] = ()
    #: what the item changed (a worktree profile's multi-step item)
    changes: Changes | None = None
    #: its last check (``--check``) and the repair turns before it
    check: CheckResult | None = None
    repairs: int = 0

    @property
    def usage(self) -> Usage | None:
        """What the item's prompts reported spending (every step's), None if unknown."""
        return Usage.total(r.usage for r in (self.steps or ((self.result,) if self.result else ())))

    def to_record(self) -> dict[str, Any]:
        """The JSON object of the journal and of ``toolfleet map --json``."""
        record: dict[str, Any] = {"key": self.key, "ok": self.ok}
        if self.result is not None:
            record.update(
                output=self.result.output,
                exit_status=self.result.exit_status,
                truncated=self.result.truncated,
            )
        if self.error_type is not None:
            record.update(error_type=self.error_type, error=self.error)
        record.update(
            worker=self.worker,
            duration_ms=round(self.duration_ms, 3),
            tool_ms=None if self.result is None else self.result.duration_ms,
            attempts=self.attempts,
            prompt_id=None if self.result is None else self.result.prompt_id,
        )
        usage = self.usage
        if usage is not None:
            record["usage"] = usage.model_dump()
        if self.changes is not None:
            c = self.changes
            record["changes"] = {
                "id": c.id,
                "branch": c.branch if c.commit else None,
                "state": c.state,
                "files": c.files,
                "insertions": c.insertions,
                "deletions": c.deletions,
            }
        if self.check is not None:
            record["check"] = self.check.model_dump(exclude={"tree"})
            record["repairs"] = self.repairs
        if self.steps:
            record["steps"] = [
                {"output": r.output, "ok": r.ok, "exit_status": r.exit_status} for r in self.steps
            ]
        return record


def text_digest(text: str) -> str:
    """A short digest of a prompt's text, kept in the journal to notice changed prompts."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


_PLACEHOLDER = re.compile(r"\{(path|name|stem|index)(?:!([qr]))?\}")


def expand_template(template: str, paths: Sequence[str | os.PathLike[str]]) -> list[MapItem]:
    """One item per path: ``template`` with {path} {name} {stem} {index} filled in.

    ``{index}`` counts from 0 in the order given. ``!q`` shell-quotes a value
    (``{path!q}``), ``!r`` makes it a Python string literal. Other braces are left alone,
    so ``${HOME}`` or ``awk '{print}'`` need no escaping. The key of each item is its path.
    """
    if _PLACEHOLDER.search(template) is None:
        raise ValueError("the template uses none of {path} {name} {stem} {index}")
    return [
        MapItem(
            key=os.fspath(raw),
            text=_fill(template, os.fspath(raw), index),
            paths=(os.fspath(raw),),
            index=index,
        )
        for index, raw in enumerate(paths)
    ]


def expand_steps(
    templates: Sequence[str], paths: Sequence[str | os.PathLike[str]]
) -> list[MapItem]:
    """One multi-step item per path: each of ``templates`` filled in as by
    :func:`expand_template` (at least one of them must use a placeholder)."""
    if not templates:
        raise ValueError("a multi-step item needs at least one step")
    if not any(_PLACEHOLDER.search(t) for t in templates):
        raise ValueError("no step uses any of {path} {name} {stem} {index}")
    items = []
    for index, raw in enumerate(paths):
        path = os.fspath(raw)
        steps = tuple(_fill(t, path, index) for t in templates)
        items.append(
            MapItem(key=path, text="\n".join(steps), steps=steps, paths=(path,), index=index)
        )
    return items


def fill_fields(template: str, item: MapItem) -> str:
    """``template`` with the placeholders of ``item``'s first path (or, without one,
    its key) filled in, as :func:`expand_template` fills them."""
    return _fill(template, item.paths[0] if item.paths else item.key, item.index)


def _fill(template: str, path: str, index: int) -> str:
    """``template`` with the placeholders of ``path`` (the ``index``-th) filled in."""
    pure = PurePath(path)
    values = {"path": path, "name": pure.name, "stem": pure.stem, "index": str(index)}

    def fill(match: re.Match[str]) -> str:
        value = values[match[1]]
        if match[2] == "q":
            return shlex.quote(value)
        if match[2] == "r":
            return repr(value)
        return value

    return _PLACEHOLDER.sub(fill, template)


_JSONL_FIELDS = {"key", "text", "profile", "timeout", "paths"}


def read_jsonl(lines: Iterable[str], source: str = "<jsonl>") -> list[MapItem]:
    """Items from JSON lines ``{"key": ..., "text": ..., "profile": ..., "timeout": ...,
    "paths": [...]}``.

    Only ``text`` is required; ``key`` defaults to the line number. Blank lines are
    skipped. A bad line raises ValueError naming ``source`` and the line.
    """
    items: list[MapItem] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{where}: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        unknown = sorted(set(obj) - _JSONL_FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        text, key = obj.get("text"), obj.get("key", number)
        profile, timeout = obj.get("profile"), obj.get("timeout")
        if not isinstance(text, str):
            raise ValueError(f"{where}: 'text' must be a string")
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise ValueError(f"{where}: 'key' must be a string or an integer")
        if profile is not None and not isinstance(profile, str):
            raise ValueError(f"{where}: 'profile' must be a string")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise ValueError(f"{where}: 'timeout' must be a positive number of seconds")
        paths = obj.get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise ValueError(f"{where}: 'paths' must be a list of file names")
        seconds = None if timeout is None else float(timeout)
        items.append(
            MapItem(str(key), text, profile, seconds, paths=tuple(paths), index=len(items))
        )
    return items
