#!/usr/bin/env python3
"""A scripted OpenAI-compatible chat server for driving the real aider without a model.

Standard library only. It speaks the part of the OpenAI API that aider (through litellm
and the openai client) uses:

- ``POST /v1/chat/completions``: streamed (``"stream": true``: server-sent events, one
  ``data: {chunk}`` per word, a last chunk with ``finish_reason: "stop"``, a usage chunk
  when ``stream_options.include_usage`` asks for one, then ``data: [DONE]``) or not (one
  ``chat.completion`` object); both report ``usage`` (about 4 characters a token).
- ``GET /v1/models`` and ``GET /v1/models/ID``: a short, made-up model list.

What it answers: a request whose last user message mentions ``DOC_ID`` is an edit
request. Its file is the one of the chat's files (those aider sends, with their contents,
in its "I have *added these files to the chat*" message) named in the request, or the
only one; the reply is the edit that puts a line ``# DOC_ID: <stem>`` (``a`` for
``a.py``) at the top of that file, in the edit format of aider's system prompt:

- ``whole`` (``aider/coders/wholefile_prompts.py``): the file's path alone on a line,
  then a fenced block with the whole new content;
- ``diff`` (``editblock_prompts.py``): the path, then a fenced SEARCH/REPLACE block
  whose SEARCH is the file's first line (empty for an empty file);
- ``diff-fenced`` (``editblock_fenced_prompts.py``): the same with the path inside the fence.

The fence is the one aider used for the file (``` or ```` or ``<source>``...). A file
that already starts with the header gets "No changes are needed."; a DOC_ID request with
no file in the chat gets a request to add it. Any other request gets a short plain reply,
``Fake reply #N.``.

Slips and repairs: the first DOC_ID edit of a file in ``server.slipping`` (names as aider
sends them, ``src/m07.py``) also appends a slip line at the end of the file, once per
file, the kinds alternating in the order files slip: ``syntax`` first, the line
``def slip(:  # fake-model slip`` (a SyntaxError), then ``assert``, the line
``VALUE = -1  # fake-model slip`` (the test repositories' tests assert their modules'
``VALUE``). Such an edit, and a repair, SEARCHes the whole file in the diff formats. A
request whose last user message contains ``failed with`` (a failed check's output; looked
at before DOC_ID) is a repair: its file (found as a DOC_ID request's) loses every line
with ``fake-model slip`` and gets the header if it lacks it; a file without such a line
gets "No changes are needed.". ``server.slipped`` and ``server.repaired`` list the files
in order.

Run: ``python fake_openai.py [--port N] [--chunk-delay S] [--env-file F]`` prints the
port (``--port 0``, the default, picks a free one) on stdout when it listens; each
request is logged to stderr in one line. ``--env-file F`` writes ``export`` lines to F
that point aider at this server, offline (:func:`aider_env`): source it in the shell
that starts the aider workers. In tests: ``server, thread = serve(0)``; ``server.port``,
``server.requests`` (one dict per chat request: kind, format, file, slip, usage), then
``server.shutdown(); server.server_close()``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import threading
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

try:  # a module of tests.programs, or a script run from its folder
    from .fakeserver import FakeServer, JsonHandler, serve_in_thread
except ImportError:
    from fakeserver import FakeServer, JsonHandler, serve_in_thread  # type: ignore[no-redef]

FILES_PREFIX = "I have *added these files to the chat*"
# aider's fences (aider/coders/base_coder.py all_fences), opening -> closing
FENCES = {
    "```": "```",
    "````": "````",
    **{f"<{tag}>": f"</{tag}>" for tag in ("source", "code", "pre", "codeblock", "sourcecode")},
}
MODELS = ("gpt-4o-mini", "gpt-4o", "fake-model")
HEADER = "# DOC_ID: {stem}"
#: what marks a slip line; the lines of each kind of slip, in the order files slip
SLIP_MARK = "fake-model slip"
SLIPS = {
    "syntax": f"def slip(:  # {SLIP_MARK}",
    "assert": f"VALUE = -1  # {SLIP_MARK}",
}
#: the model aider is told to use: known to aider (its settings) and to litellm
MODEL = "openai/gpt-4o-mini"
#: litellm's metadata for MODEL, given to aider as a file: it would download the price list
METADATA = {
    MODEL: {
        "max_tokens": 16384,
        "max_input_tokens": 128000,
        "max_output_tokens": 16384,
        # gpt-4o-mini's prices (USD per token): aider then prints a "Cost:" part
        "input_cost_per_token": 0.15e-6,
        "output_cost_per_token": 0.6e-6,
        "litellm_provider": "openai",
        "mode": "chat",
    }
}
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def text_of(message: dict[str, Any]) -> str:
    """A message's text (content given as a string or as a list of parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def chat_files(messages: list[dict[str, Any]]) -> tuple[dict[str, str], tuple[str, str]]:
    """The editable files aider sent (relative name -> content) and the fence it used."""
    files: dict[str, str] = {}
    fence = ("```", "```")
    sent = [text_of(m) for m in messages if m.get("role") == "user"]
    listing = next((t for t in reversed(sent) if t.startswith(FILES_PREFIX)), None)
    if listing is None:
        return files, fence
    # "\n{name}\n{fence open}\n{content}{fence close}\n" per file (get_files_content)
    lines = listing.split("\n")
    i = 0
    while i + 1 < len(lines):
        name, opening = lines[i].strip(), lines[i + 1]
        if not name or opening not in FENCES:
            i += 1
            continue
        closing = FENCES[opening]
        body: list[str] = []
        j = i + 2
        while j < len(lines):
            line = lines[j]
            if line == closing:
                body.append("")  # content ended with a newline
                break
            if line.endswith(closing):  # content without a final newline
                body.append(line[: -len(closing)])
                break
            body.append(line)
            j += 1
        files[name] = "\n".join(body)
        fence = (opening, closing)
        i = j + 1
    return files, fence


def edit_format(messages: list[dict[str, Any]]) -> str:
    """``whole``, ``diff`` or ``diff-fenced``, from aider's system prompt and examples."""
    everything = "\n".join(text_of(m) for m in messages)
    if "*file listing*" in everything:
        return "whole"
    if re.search(r"(?m)^(`{3,4}|<\w+>)\w*\n[^\n]+\n<<<<<<< SEARCH$", everything):
        return "diff-fenced"
    if "SEARCH/REPLACE" in everything:
        return "diff"
    return "whole"


def last_request(messages: list[dict[str, Any]]) -> str:
    """The user's request: the last user message that is not aider's file listing."""
    for message in reversed(messages):
        text = text_of(message)
        if message.get("role") == "user" and not text.startswith(FILES_PREFIX):
            return text
    return ""


def target_file(request: str, files: dict[str, str]) -> str | None:
    named = [name for name in files if re.search(rf"(?<![\w/.-]){re.escape(name)}\b", request)]
    if not named:  # "add it to b.py" for a file sent as src/b.py
        named = [
            name
            for name in files
            if re.search(rf"(?<![\w/.-]){re.escape(PurePosixPath(name).name)}\b", request)
        ]
    if len(named) >= 1:
        return named[0]
    if len(files) == 1:
        return next(iter(files))
    return None


def header_of(name: str) -> str:
    return HEADER.format(stem=PurePosixPath(name).stem)


def ended(text: str) -> str:
    """``text`` with a final newline (none added to an empty text)."""
    return text if text == "" or text.endswith("\n") else text + "\n"


def with_header(name: str, content: str) -> str:
    """``content`` with the DOC_ID header as its first line (added when missing)."""
    header = header_of(name)
    return content if content.split("\n", 1)[0] == header else f"{header}\n{content}"


def edit(name: str, old: str, new: str, fmt: str, fence: tuple[str, str]) -> str:
    """The edit of ``name`` in aider's format ``fmt``: for ``whole`` the file ``new``;
    for ``diff``/``diff-fenced`` a SEARCH/REPLACE block that turns ``old`` (a part of the
    file, empty for an empty file) into ``new``."""
    if fmt == "whole":
        return f"{name}\n{fence[0]}\n{ended(new)}{fence[1]}\n"
    block = f"<<<<<<< SEARCH\n{ended(old)}=======\n{ended(new)}>>>>>>> REPLACE\n"
    lang = "python" if name.endswith(".py") else ""
    if fmt == "diff-fenced":
        return f"{fence[0]}{lang}\n{name}\n{block}{fence[1]}\n"
    return f"{name}\n{fence[0]}{lang}\n{block}{fence[1]}\n"


def edit_reply(
    name: str, content: str, fmt: str, fence: tuple[str, str], slip: str | None = None
) -> str:
    """The DOC_ID edit, or "No changes are needed." for a file with its header; with
    ``slip`` (a kind of :data:`SLIPS`), that slip's line appended at the end of the file."""
    header = header_of(name)
    if content.split("\n", 1)[0] == header:
        return "No changes are needed."
    intro = f"I will add the line `{header}` at the top of `{name}`.\n\n"
    if slip is not None:
        new = ended(with_header(name, content)) + SLIPS[slip] + "\n"
        return intro + edit(name, content, new, fmt, fence)
    if fmt == "whole" or content == "":
        return intro + edit(name, content, f"{header}\n{content}", fmt, fence)
    first, _, _ = content.partition("\n")  # the diff formats search the first line only
    return intro + edit(name, f"{first}\n", f"{header}\n{first}\n", fmt, fence)


def repair_reply(name: str, content: str, fmt: str, fence: tuple[str, str]) -> str | None:
    """The edit that removes ``name``'s slip lines (and restores its header); None when
    the file has no slip line."""
    lines = content.splitlines(keepends=True)
    kept = [line for line in lines if SLIP_MARK not in line]
    if len(kept) == len(lines):
        return None
    new = with_header(name, "".join(kept))
    intro = f"I will remove the broken line from `{name}`.\n\n"
    return intro + edit(name, content, new, fmt, fence)


class Hold:
    """Holds the first chat request whose last user message contains ``text`` until
    :meth:`release` (or 300 s): a test knows then that a tool waits on this request."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.arrived = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def wait(self) -> None:
        self.arrived.set()
        self._released.wait(300)


class FakeOpenAI(FakeServer):
    def __init__(self, port: int, chunk_delay: float = 0.0, host: str = "127.0.0.1") -> None:
        super().__init__(port, Handler, host)
        self.chunk_delay = chunk_delay
        self.holds: list[Hold] = []
        #: files whose first DOC_ID edit slips; those that slipped and were repaired
        self.slipping: set[str] = set()
        self.slipped: list[str] = []
        self.repaired: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a killed tool) is no error of the server's."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def hold(self, text: str) -> Hold:
        """Hold the next chat request that contains ``text`` (see :class:`Hold`)."""
        held = Hold(text)
        with self.lock:
            self.holds.append(held)
        return held

    def answer(self, body: dict[str, Any], peer: int | None = None) -> tuple[str, dict[str, Any]]:
        """The reply's text for one chat request, and what was decided (for the log);
        ``peer``: the client's port (recorded)."""
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        request = last_request(messages)
        files, fence = chat_files(messages)
        fmt = edit_format(messages)
        with self.lock:
            number = len(self.requests) + 1
            record: dict[str, Any] = {
                "n": number,
                "model": body.get("model"),
                "stream": bool(body.get("stream")),
                "files": sorted(files),
                "request": request[:200],
                "peer": peer,
            }
            self.requests.append(record)
            held = next((h for h in self.holds if h.text in request), None)
            if held is not None:
                self.holds.remove(held)  # once: a retry of the request goes through
        if held is not None:
            record.update(held=True)
            held.wait()
        repair = "failed with" in request
        if repair or "DOC_ID" in request:
            name = target_file(request, files)
            if name is None:
                record.update(kind="no-file")
                return "Please add the file to the chat first.", record
            content = files[name]
            if repair:
                record.update(kind="repair", format=fmt, file=name)
                reply = repair_reply(name, content, fmt, fence)
                if reply is None:
                    return "No changes are needed.", record
                with self.lock:
                    self.repaired.append(name)
                return reply, record
            record.update(kind="edit", format=fmt, file=name)
            slip = None
            if content.split("\n", 1)[0] != header_of(name):
                with self.lock:
                    if name in self.slipping and name not in self.slipped:
                        slip = list(SLIPS)[len(self.slipped) % len(SLIPS)]
                        self.slipped.append(name)
            if slip is not None:
                record.update(slip=slip)
            return edit_reply(name, content, fmt, fence, slip), record
        record.update(kind="text")
        return f"Fake reply #{number}.", record


class Handler(JsonHandler):
    server: FakeOpenAI
    server_version = "FakeOpenAI/1.0"
    protocol_version = "HTTP/1.0"  # a stream ends when the connection closes

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request from log() instead

    def log(self, text: str) -> None:
        print(f"fake_openai: {text}", file=sys.stderr, flush=True)

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self) -> None:
        self.log(f"{self.command} {self.path}: 404")
        error = {"message": f"no route {self.command} {self.path}", "type": "invalid_request_error"}
        self.send_json(404, {"error": error})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.endswith("/models"):
            self.log(f"GET {self.path}")
            data = [model_object(name) for name in MODELS]
            self.send_json(200, {"object": "list", "data": data})
        elif "/models/" in path:
            self.log(f"GET {self.path}")
            self.send_json(200, model_object(path.rsplit("/", 1)[1]))
        else:
            self.not_found()

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if not path.endswith("/chat/completions"):
            self.not_found()
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            self.log(f"POST {self.path}: bad JSON: {exc}")
            error = {"message": f"bad JSON: {exc}", "type": "invalid_request_error"}
            self.send_json(400, {"error": error})
            return
        # a provider's token window counts the input and the tokens the request may
        # answer with (OpenAI's rule)
        asked = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        if self.refused(tokens(json.dumps(body.get("messages", []))) + asked):
            self.log(f"POST {self.path}: refused by the provider's limits")
            return
        reply, record = self.server.answer(body, self.client_address[1])
        model = str(body.get("model") or "fake-model")
        usage = {
            "prompt_tokens": tokens(json.dumps(body.get("messages", []))),
            "completion_tokens": tokens(reply),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        record["usage"] = usage
        what = record["kind"] + (
            f" {record['format']} {record['file']}" if "file" in record else ""
        )
        if "slip" in record:
            what += f" slip={record['slip']}"
        self.log(
            f"POST {self.path} #{record['n']} model={model} stream={record['stream']} "
            f"files={','.join(record['files']) or '-'}: {what}"
        )
        if body.get("stream"):
            options = body.get("stream_options") or {}
            self.stream(model, reply, usage, bool(options.get("include_usage")))
        else:
            self.send_json(200, completion(model, reply, usage))

    def stream(self, model: str, reply: str, usage: dict[str, int], usage_chunk: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()  # HTTP/1.0: the stream ends when the connection closes
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
            payload = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        pieces = re.findall(r"\S+\s*|\s+", reply) or [""]
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            chunk([{"index": 0, "delta": delta, "finish_reason": None}])
            if self.server.chunk_delay:
                time.sleep(self.server.chunk_delay)
        last = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
        if usage_chunk:
            chunk(last)
            chunk([], usage=usage)
        else:
            chunk(last, usage=usage)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "fake-openai"}


def completion(model: str, reply: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def serve(port: int = 0, chunk_delay: float = 0.0) -> tuple[FakeOpenAI, threading.Thread]:
    """Start the server on 127.0.0.1:``port`` (0: a free one) in a daemon thread."""
    return serve_in_thread(FakeOpenAI(port, chunk_delay), "fake-openai")


def aider_env(port: int, directory: Path, edit_format: str = "whole") -> dict[str, str]:
    """The environment that points aider at the server on ``port``, offline: the model's
    metadata in a file written to ``directory``, and a proxy that is not there for
    anything else that wants the internet (it fails at once instead of timing out)."""
    metadata = directory / "model-metadata.json"
    metadata.write_text(json.dumps(METADATA), encoding="utf-8")
    return {
        "OPENAI_API_BASE": f"http://127.0.0.1:{port}/v1",
        "OPENAI_API_KEY": "fake",
        "AIDER_MODEL": MODEL,
        "AIDER_MODEL_METADATA_FILE": str(metadata),
        "AIDER_EDIT_FORMAT": edit_format,
        "AIDER_GITIGNORE": "false",  # don't add .aider* to the repository's .gitignore
        **{name: NOWHERE for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (the default)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks"
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="write 'export' lines pointing aider at this server here (and the model "
        "metadata beside it)",
    )
    args = parser.parse_args(argv)
    server = FakeOpenAI(args.port, args.chunk_delay, args.host)
    if args.env_file is not None:
        env = aider_env(server.port, args.env_file.resolve().parent)
        lines = [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
        args.env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(server.port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
