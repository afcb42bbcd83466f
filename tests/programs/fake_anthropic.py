#!/usr/bin/env python3
"""A scripted Anthropic Messages API server for driving the real Claude Code offline.

Standard library only. It speaks what Claude Code 2.1 uses: ``HEAD /`` (a reachability
check) and ``POST /v1/messages`` streamed as server-sent events (``message_start``,
``content_block_start``/``_delta``/``_stop`` for text or a ``tool_use`` block,
``message_delta`` with the stop reason and usage, ``message_stop``), or not streamed.

What it answers:

- A request whose last user text mentions ``DOC_ID`` and a file path (``src/a.py``):
  the edit, through Claude Code's own tools as a model would make it: a ``Read`` of the
  file (its Write tool refuses a file it has not read), then, given the read's result,
  a ``Write`` of the file with a ``# DOC_ID: <stem>`` line on top (the content taken
  from the disk: this server runs on the agent's machine), then, given the write's
  result, a short text. The file's absolute path comes from the working directory
  Claude Code states in its system prompt. A file that already has the header gets
  "No changes are needed."
- Any text containing ``slow``: the reply comes after 30 s (to cancel it).
- ``count to N``: the text ``line 0`` ... ``line N-1``, a line every 0.2 s (streamed).
- Anything else: ``Reply #N: I have seen K user messages.``, K counting the user's text
  messages in the conversation (so that a test sees the history kept between prompts).

Run: ``python fake_anthropic.py [--port N]`` prints the port; in tests,
``server, thread = serve(0)``; ``server.requests`` lists what each request was.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

try:  # a module of tests.programs, or a script run from its folder
    from .fakeserver import FakeServer, JsonHandler, counted_lines, run, serve_in_thread
except ImportError:
    from fakeserver import (  # type: ignore[no-redef]
        FakeServer,
        JsonHandler,
        counted_lines,
        run,
        serve_in_thread,
    )

__all__ = ["HEADER", "FakeAnthropic", "claude_env", "serve"]

HEADER = "# DOC_ID: {stem}"
_CWD = re.compile(r"Primary working directory: (\S+)")
_PATH = re.compile(r"[\w./-]+\.\w+")


def claude_env(port: int) -> dict[str, str]:
    """The environment that points Claude Code at the server on ``port``, offline."""
    return {
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ANTHROPIC_API_KEY": "fake",
        "ANTHROPIC_MODEL": "claude-sonnet-4-5",
    }


def _texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [b.get("text", "") for b in content or [] if b.get("type") == "text"]


def _tool_results(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return []
    return [b for b in content or [] if b.get("type") == "tool_result"]


def _user_text(message: dict[str, Any]) -> str:
    """The user's own words in a message (without Claude Code's system reminders)."""
    return "\n".join(t for t in _texts(message) if not t.startswith("<system-reminder>"))


class FakeAnthropic(FakeServer):
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(port, _Handler, host)

    def answer(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """The reply's content blocks and its stop reason."""
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        system = body.get("system", "")
        if isinstance(system, list):
            system = "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
        cwd_match = _CWD.search(system)
        cwd = Path(cwd_match[1]) if cwd_match else Path.cwd()
        asked = [m for m in messages if m.get("role") == "user" and _user_text(m)]
        last = messages[-1] if messages else {}
        request = _user_text(asked[-1]) if asked else ""
        record = self.record(request=request[:200], cwd=str(cwd))
        number = record["n"]
        results = _tool_results(last)
        if results:  # the agent ran the tool we asked for: go on with the edit
            tool_id = str(results[0].get("tool_use_id", ""))
            path = tool_id.split("__", 1)[1] if "__" in tool_id else ""
            if tool_id.startswith("toolu_read__"):
                target = cwd / path
                content = target.read_text(encoding="utf-8")
                header = HEADER.format(stem=Path(path).stem)
                record.update(kind="write", file=path)
                return [
                    _tool("Write", f"toolu_write__{path}", target, header + "\n" + content)
                ], "tool_use"
            record.update(kind="done", file=path)
            return [_text(f"Added the DOC_ID header to {path}.")], "end_turn"
        if "slow" in request:
            time.sleep(30)
        lines = counted_lines(request)
        if lines is not None:  # streamed by do_POST a line a delta, 0.2 s apart
            record.update(kind="count")
            return [{**_text("".join(lines)), "_pace": 0.2}], "end_turn"
        if "DOC_ID" in request:
            found = [p for p in _PATH.findall(request) if (cwd / p).is_file()]
            if not found:
                record.update(kind="no-file")
                return [_text("Which file?")], "end_turn"
            path = found[0]
            first = (cwd / path).read_text(encoding="utf-8").split("\n", 1)[0]
            if first == HEADER.format(stem=Path(path).stem):
                record.update(kind="unchanged", file=path)
                return [_text("No changes are needed.")], "end_turn"
            record.update(kind="read", file=path)
            return [_tool("Read", f"toolu_read__{path}", cwd / path)], "tool_use"
        record.update(kind="text")
        return [_text(f"Reply #{number}: I have seen {len(asked)} user messages.")], "end_turn"


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _tool(name: str, tool_id: str, path: Path, content: str | None = None) -> dict[str, Any]:
    arguments: dict[str, Any] = {"file_path": str(path)}
    if content is not None:
        arguments["content"] = content
    return {"type": "tool_use", "id": tool_id, "name": name, "input": arguments}


class _Handler(JsonHandler):
    server: FakeAnthropic

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.read_json()
        if not self.path.split("?", 1)[0].endswith("/messages"):
            self.send_json(404, {"type": "error", "error": {"type": "not_found_error"}})
            return
        if self.refused(len(json.dumps(body.get("messages", []))) // 4 + 12, "anthropic"):
            return
        blocks, stop = self.server.answer(body)
        paces = [float(block.pop("_pace", 0.0)) for block in blocks]
        usage = {
            "input_tokens": len(json.dumps(body.get("messages", []))) // 4,
            "output_tokens": 12,
        }
        message = {
            "id": f"msg_{uuid.uuid4().hex[:12]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            self.send_json(200, message)
            return
        self.start_stream()
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        self._event("message_start", {"type": "message_start", "message": start})
        for index, (block, pace) in enumerate(zip(blocks, paces, strict=True)):
            if block["type"] == "text":
                opened = {"type": "text", "text": ""}
                pieces = block["text"].splitlines(keepends=True) if pace else [block["text"]]
                deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
            else:
                opened = {**block, "input": {}}
                partial = json.dumps(block["input"])
                deltas = [{"type": "input_json_delta", "partial_json": partial}]
            self._event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opened},
            )
            for number, delta in enumerate(deltas):
                if number:
                    time.sleep(pace)
                self._event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            self._event("content_block_stop", {"type": "content_block_stop", "index": index})
        end = {"stop_reason": stop, "stop_sequence": None}
        self._event(
            "message_delta", {"type": "message_delta", "delta": end, "usage": {"output_tokens": 12}}
        )
        self._event("message_stop", {"type": "message_stop"})

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()


def serve(port: int = 0) -> tuple[FakeAnthropic, threading.Thread]:
    """Start the server on 127.0.0.1:``port`` (0: a free one) in a daemon thread."""
    return serve_in_thread(FakeAnthropic(port), "fake-anthropic")


def main(argv: list[str] | None = None) -> int:
    return run(FakeAnthropic, __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
