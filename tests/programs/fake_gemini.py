#!/usr/bin/env python3
"""A scripted Gemini API (generateContent) server for driving the real Gemini CLI offline.

Standard library only. It answers ``POST /v1beta/models/M:streamGenerateContent?alt=sse``
(one server-sent event carrying the whole reply) and ``...:generateContent`` (JSON).

What it answers:

- A request whose last user text mentions ``DOC_ID`` and a file path: a ``write_file``
  function call (Gemini CLI's own tool) that puts ``# DOC_ID: <stem>`` on top of the file,
  its content read from the disk (the server runs on the agent's machine), the path made
  absolute with the workspace directory Gemini CLI states in its context; given the
  call's result, a short text.
- Any text containing ``slow``: the reply comes after 30 s (to cancel it).
- ``count to N``: the text ``line 0`` ... ``line N-1``, a line every 0.2 s (streamed).
- Anything else: ``Reply #N: I have seen K user messages.`` (K: the user's own texts in
  the conversation, so that a test sees the history kept between prompts).

Run: ``python fake_gemini.py [--port N]``; in tests ``server, thread = serve(0)``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
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

__all__ = ["FakeGemini", "gemini_env", "serve"]

HEADER = "# DOC_ID: {stem}"
_WORKSPACE = re.compile(r"Workspace Directories:\*\*\s*\n\s*- (\S+)")
_PATH = re.compile(r"[\w./-]+\.\w+")


def gemini_env(port: int) -> dict[str, str]:
    """The environment that points Gemini CLI at the server on ``port``, offline."""
    return {
        "GEMINI_API_KEY": "fake",
        "GOOGLE_GEMINI_BASE_URL": f"http://127.0.0.1:{port}",
        "GEMINI_MODEL": "gemini-2.5-flash",
    }


def _texts(content: dict[str, Any]) -> list[str]:
    return [str(p["text"]) for p in content.get("parts", []) if "text" in p]


class FakeGemini(FakeServer):
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(port, _Handler, host)

    def answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The reply's parts."""
        contents = [c for c in body.get("contents", []) if isinstance(c, dict)]
        context = "\n".join(t for c in contents for t in _texts(c))
        found = _WORKSPACE.search(context)
        cwd = Path(found[1]) if found else Path.cwd()
        # the user's own texts (the first user content also carries the CLI's context)
        asked = [_texts(c)[-1] for c in contents if c.get("role") == "user" and _texts(c)]
        last = contents[-1] if contents else {}
        record = self.record(request=(asked or [""])[-1][:200])
        number = record["n"]
        responses = [
            p["functionResponse"] for p in last.get("parts", []) if "functionResponse" in p
        ]
        if responses:  # the agent ran our write_file: done
            record.update(kind="done")
            path = str(responses[0].get("response", {}))
            name = next((p for p in _PATH.findall(path) if p.endswith(".py")), "the file")
            return [{"text": f"Added the DOC_ID header to {Path(name).name}."}]
        request = record["request"]
        if "slow" in request:
            time.sleep(30)
        lines = counted_lines(request)
        if lines is not None:  # do_POST streams these parts one chunk at a time
            record.update(kind="count")
            return [{"text": line} for line in lines]
        if "DOC_ID" in request:
            files = [p for p in _PATH.findall(request) if (cwd / p).is_file()]
            if not files:
                record.update(kind="no-file")
                return [{"text": "Which file?"}]
            target = cwd / files[0]
            content = target.read_text(encoding="utf-8")
            record.update(kind="write", file=files[0])
            new = HEADER.format(stem=target.stem) + "\n" + content
            call = {"name": "write_file", "args": {"file_path": str(target), "content": new}}
            return [{"functionCall": call}]
        record.update(kind="text")
        return [{"text": f"Reply #{number}: I have seen {len(asked)} user messages."}]


class _Handler(JsonHandler):
    server: FakeGemini

    def do_GET(self) -> None:
        self.send_body(404, "application/json", b"{}")

    def do_POST(self) -> None:
        body = self.read_json()
        if self.refused(len(json.dumps(body.get("contents", []))) // 4 + 12, "gemini"):
            return
        parts = self.server.answer(body)
        if "stream" in self.path and len(parts) > 1 and all("text" in p for p in parts):
            self._stream(body, parts)
            return
        chunk = {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": len(json.dumps(body.get("contents", []))) // 4,
                "candidatesTokenCount": 12,
                "totalTokenCount": len(json.dumps(body.get("contents", []))) // 4 + 12,
            },
            "modelVersion": "gemini-2.5-flash",
        }
        if "stream" in self.path:
            self.send_body(200, "text/event-stream", f"data: {json.dumps(chunk)}\r\n\r\n".encode())
        else:
            self.send_body(200, "application/json", json.dumps(chunk).encode())

    def _stream(self, body: dict[str, Any], parts: list[dict[str, Any]]) -> None:
        """Each part its own SSE chunk, 0.2 s apart, as a model streams its text."""
        self.start_stream()
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            candidate: dict[str, Any] = {
                "content": {"role": "model", "parts": [part]},
                "index": 0,
            }
            chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}
            if last:
                candidate["finishReason"] = "STOP"
                prompt = len(json.dumps(body.get("contents", []))) // 4
                chunk["usageMetadata"] = {
                    "promptTokenCount": prompt,
                    "candidatesTokenCount": 12,
                    "totalTokenCount": prompt + 12,
                }
            self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
            self.wfile.flush()
            if not last:
                time.sleep(0.2)


def serve(port: int = 0) -> tuple[FakeGemini, threading.Thread]:
    """Start the server on 127.0.0.1:``port`` (0: a free one) in a daemon thread."""
    return serve_in_thread(FakeGemini(port), "fake-gemini")


def main(argv: list[str] | None = None) -> int:
    return run(FakeGemini, __doc__ or "", argv)


if __name__ == "__main__":
    sys.exit(main())
