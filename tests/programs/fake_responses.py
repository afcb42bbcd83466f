#!/usr/bin/env python3
"""A scripted OpenAI Responses API server for driving the real Codex CLI offline.

Standard library only. It answers ``POST /v1/responses`` with server-sent events
(``response.created``, ``response.output_item.added``/``.done``, text deltas,
``response.completed`` with usage), and ``GET /v1/models`` with an empty list.

What it answers:

- A request whose last user text mentions ``DOC_ID`` and a file path: an
  ``exec_command`` function call (Codex's own tool) running ``sed`` to put
  ``# DOC_ID: <stem>`` on top of the file (in the agent's working directory); given
  the command's output, a short text.
- Any text containing ``slow``: the reply comes after 30 s (to cancel it).
- ``count to N``: the text ``line 0`` ... ``line N-1``, a line every 0.2 s (streamed).
- Anything else: ``Reply #N: I have seen K user messages.`` (K: the user's own texts in
  the conversation, Codex's environment context left out).

Run: ``python fake_responses.py [--port N]``; in tests ``server, thread = serve(0)``.
"""

from __future__ import annotations

import json
import re
import shlex
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

__all__ = ["FakeResponses", "codex_env", "serve"]

_CWD = re.compile(r"<cwd>([^<]+)</cwd>")
_PATH = re.compile(r"[\w./-]+\.\w+")


def codex_env(port: int) -> dict[str, str]:
    """The environment that points Codex (the built-in codex profile) at ``port``."""
    return {
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "OPENAI_API_KEY": "fake",
        "CODEX_MODEL": "gpt-5-codex",
    }


def _texts(item: dict[str, Any]) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    return [str(c.get("text", "")) for c in content or [] if isinstance(c, dict)]


class FakeResponses(FakeServer):
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(port, _Handler, host)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """The reply's one output item: a message, or a function call."""
        items = [i for i in body.get("input", []) if isinstance(i, dict)]
        context = "\n".join(t for i in items for t in _texts(i))
        found = _CWD.search(context)
        cwd = Path(found[1].strip()) if found else Path.cwd()
        asked = [
            t
            for i in items
            if i.get("role") == "user"
            for t in _texts(i)
            if t and not t.lstrip().startswith("<")
        ]
        request = asked[-1] if asked else ""
        record = self.record(request=request[:200])
        number = record["n"]
        if items and items[-1].get("type") == "function_call_output":
            record.update(kind="done")
            return _message(f"Added the DOC_ID header to {_target(request) or 'the file'}.")
        if "slow" in request:
            time.sleep(30)
        lines = counted_lines(request)
        if lines is not None:
            record.update(kind="count")
            return {**_message("".join(lines)), "_pace": 0.2}
        if "DOC_ID" in request:
            path = _target(request)
            if path is None or not (cwd / path).is_file():
                record.update(kind="no-file")
                return _message("Which file?")
            record.update(kind="edit", file=path)
            header = shlex.quote(f"1i # DOC_ID: {Path(path).stem}")
            command = f"sed -i {header} {shlex.quote(path)}"
            return {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex[:8]}",
                "call_id": f"call_{uuid.uuid4().hex[:8]}",
                "name": "exec_command",
                "arguments": json.dumps({"cmd": command}),
                "status": "completed",
            }
        record.update(kind="text")
        return _message(f"Reply #{number}: I have seen {len(asked)} user messages.")


def _target(request: str) -> str | None:
    return next((p for p in _PATH.findall(request) if "/" in p or p.endswith(".py")), None)


def _message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{uuid.uuid4().hex[:8]}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


class _Handler(JsonHandler):
    server: FakeResponses

    def do_GET(self) -> None:
        self.send_body(200, "application/json", b'{"object": "list", "data": []}')

    def do_POST(self) -> None:
        body = self.read_json()
        if not self.path.split("?", 1)[0].endswith("/responses"):
            self.send_body(404, "application/json", b'{"error": {"message": "no route"}}')
            return
        if self.refused(len(json.dumps(body.get("input", []))) // 4 + 12):
            return
        item = self.server.answer(body)
        pace = float(item.pop("_pace", 0.0))  # seconds between the text's lines
        rid = f"resp_{uuid.uuid4().hex[:8]}"
        started = {**item, "status": "in_progress"}
        if item["type"] == "message":
            started["content"] = []
        usage = {
            "input_tokens": len(json.dumps(body.get("input", []))) // 4,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 12,
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        usage["total_tokens"] = usage["input_tokens"] + 12
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": {"id": rid, "status": "in_progress", "output": []}}),
            ("response.output_item.added", {"output_index": 0, "item": started}),
        ]
        if item["type"] == "message":
            delta = {"item_id": item["id"], "output_index": 0, "content_index": 0}
            text = item["content"][0]["text"]
            pieces = text.splitlines(keepends=True) if pace else [text]
            events += [("response.output_text.delta", {**delta, "delta": p}) for p in pieces]
        events += [
            ("response.output_item.done", {"output_index": 0, "item": item}),
            (
                "response.completed",
                {"response": {"id": rid, "status": "completed", "output": [item], "usage": usage}},
            ),
        ]
        data = [
            f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()
            for kind, payload in events
        ]
        if not pace:
            self.send_body(200, "text/event-stream", b"".join(data))
            return
        # streamed as a model streams: each delta when its time comes
        self.start_stream()
        for kind, chunk in zip((k for k, _ in events), data, strict=True):
            self.wfile.write(chunk)
            self.wfile.flush()
            if kind == "response.output_text.delta":
                time.sleep(pace)


def serve(port: int = 0) -> tuple[FakeResponses, threading.Thread]:
    """Start the server on 127.0.0.1:``port`` (0: a free one) in a daemon thread."""
    return serve_in_thread(FakeResponses(port), "fake-responses")


def main(argv: list[str] | None = None) -> int:
    return run(FakeResponses, __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
