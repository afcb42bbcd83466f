"""How a prompt's text is typed into each kind of tool, multi-line prompts included."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from toolfleet.errors import IncompleteInput

__all__ = ["Typed", "encode"]

# Long python prompts are typed in pieces so that no line grows without bound.
_PY_CHUNK = 2048


@dataclass(frozen=True)
class Typed:
    """The text to type and how many prompts the tool shows while reading it."""

    data: str
    prompts: int


def encode(kind: str, text: str, tag: str) -> Typed:
    """Encode ``text`` for an encoder ``kind`` (see ``Profile.encoder``)."""
    if kind == "python":
        return _python(text)
    if kind == "node":
        return Typed(f"_tf({json.dumps(text)})\n", 1)
    if kind == "bash":
        # eval of a quoted here-document: the shell parses the whole prompt at once, so
        # multi-line text works and incomplete text is a syntax error, never a hang. The
        # builtin `read` takes the text (no subshell, no `cat`: a fork and an exec less,
        # about 2 ms of the round trip).
        end = f"TF_END_{tag}"
        load = f"IFS= read -r -d '' _tf_prompt <<'{end}'\n{text}\n{end}\n"
        return Typed(load + 'eval "$_tf_prompt"\n', 0)
    if kind == "sqlite":
        _check_sql(text)
        return _lines(text)
    if kind == "lines":
        return _lines(text)
    if kind == "aider":
        return _aider(text, tag)
    raise ValueError(f"unknown encoder {kind!r}")


def _lines(text: str) -> Typed:
    return Typed(text + "\n", text.count("\n") + 1)


def _aider(text: str, tag: str) -> Typed:
    """aider reads a multi-line message as ``{TAG`` ... ``TAG}``; it shows a prompt per line."""
    if "\n" not in text and not text.startswith("{"):
        return Typed(text + "\n", 1)
    if text.startswith("{") and text.rstrip().endswith("}"):
        return _lines(text)  # already in aider's own multi-line syntax
    return Typed(f"{{tf{tag}\n{text}\ntf{tag}}}\n", text.count("\n") + 3)


def _python(text: str) -> Typed:
    if len(text) <= _PY_CHUNK:
        return Typed(f"_tf_exec({text!r})\n", 1)
    pieces = [text[i : i + _PY_CHUNK] for i in range(0, len(text), _PY_CHUNK)]
    lines = ["_tf_buf = []"]
    lines += [f"_tf_buf.append({piece!r})" for piece in pieces]
    lines.append("_tf_exec(''.join(_tf_buf)); del _tf_buf")
    return Typed("\n".join(lines) + "\n", len(lines))


def _check_sql(text: str) -> None:
    """Refuse SQL that would leave the shell at its continuation prompt."""
    sql = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("."))
    if sql.strip() and not sqlite3.complete_statement(sql):
        raise IncompleteInput("incomplete SQL statement (missing ';' or an unclosed quote)")
