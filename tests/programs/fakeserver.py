"""What the fake model servers share: a recording server, a JSON handler, a thread to
serve in, a main."""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

__all__ = [
    "FakeServer",
    "JsonHandler",
    "Provider",
    "Refusal",
    "counted_lines",
    "run",
    "serve_in_thread",
    "stop_serving",
]

S = TypeVar("S", bound=ThreadingHTTPServer)

_COUNT = re.compile(r"count to (\d+)")


def counted_lines(request: str) -> list[str] | None:
    """For ``count to N``: the lines ``line 0`` ... ``line N-1`` of the answer every fake
    streams a line every 0.2 s (each with its newline but the last); else None."""
    found = _COUNT.search(request)
    if found is None:
        return None
    return "\n".join(f"line {i}" for i in range(int(found[1]))).splitlines(keepends=True)


@dataclass
class Refusal:
    """A provider's refusal: its status, headers and JSON body."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]


#: the providers' own words, by API: rate limited, overloaded, out of quota
_WORDS: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {
    "openai": {
        "limited": (
            429,
            {
                "error": {
                    "message": "Rate limit reached for requests. Please try again in {wait}s.",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                }
            },
        ),
        "overloaded": (
            503,
            {"error": {"message": "The server is overloaded.", "type": "server_error"}},
        ),
        "quota": (
            429,
            {
                "error": {
                    "message": "You exceeded your current quota, please check your plan and "
                    "billing details.",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
        ),
    },
    "gemini": {
        "limited": (
            429,
            {
                "error": {
                    "code": 429,
                    "message": "Resource has been exhausted (e.g. check quota).",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": "{wait}s",
                        }
                    ],
                }
            },
        ),
        "overloaded": (
            503,
            {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded.",
                    "status": "UNAVAILABLE",
                }
            },
        ),
        "quota": (
            429,
            {
                "error": {
                    "code": 429,
                    "message": "You exceeded your current quota, please check your plan and "
                    "billing details.",
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
        ),
    },
    "anthropic": {
        "limited": (
            429,
            {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "Number of requests too high"},
            },
        ),
        "overloaded": (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
        "quota": (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "Your credit balance is too low to access the Anthropic API.",
                },
            },
        ),
    },
}


@dataclass
class Provider:
    """What a real provider enforces, and counts of what it answered.

    ``rpm``/``tpm``: requests and tokens per ``window`` seconds (a moving window); over
    either, 429 with ``retry-after`` (and the body's "try again in Ns"). ``overload(n)``:
    the next n requests get 529 (Anthropic) or 503 (OpenAI). ``quota_after``: requests
    past this many get the "quota exhausted" refusal, as do all after ``exhaust()``.
    ``latency``: seconds each accepted request waits before its answer."""

    rpm: int | None = None
    tpm: int | None = None
    window: float = 60.0
    quota_after: int | None = None
    latency: float = 0.0
    accepted: int = 0
    limited: int = 0
    overloaded: int = 0
    quota_refused: int = 0
    #: the most requests (and tokens) accepted within one window
    peak_requests: int = 0
    peak_tokens: int = 0
    _times: deque[tuple[float, int]] = field(default_factory=deque)
    _overload: int = 0
    _exhausted: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def overload(self, requests: int) -> None:
        with self._lock:
            self._overload += requests

    def exhaust(self) -> None:
        with self._lock:
            self._exhausted = True

    def admit(self, tokens: int, api: str = "openai") -> Refusal | None:
        """None when the request is taken (counted), else the refusal to answer."""
        words = _WORDS[api]
        with self._lock:
            now = time.monotonic()
            while self._times and self._times[0][0] <= now - self.window:
                self._times.popleft()
            if self._exhausted or (
                self.quota_after is not None and self.accepted >= self.quota_after
            ):
                self.quota_refused += 1
                return Refusal(words["quota"][0], {}, words["quota"][1])
            if self._overload > 0:
                self._overload -= 1
                self.overloaded += 1
                return Refusal(words["overloaded"][0], {}, words["overloaded"][1])
            used = sum(t for _, t in self._times)
            if (self.rpm is not None and len(self._times) >= self.rpm) or (
                self.tpm is not None and self._times and used + tokens > self.tpm
            ):
                self.limited += 1
                wait = max(1, int(self._times[0][0] + self.window - now + 0.999))
                status, body = words["limited"]
                body = json.loads(json.dumps(body).replace("{wait}", str(wait)))
                return Refusal(status, {"retry-after": str(wait)}, body)
            self._times.append((now, tokens))
            self.accepted += 1
            self.peak_requests = max(self.peak_requests, len(self._times))
            self.peak_tokens = max(self.peak_tokens, used + tokens)
        if self.latency:
            time.sleep(self.latency)
        return None


class FakeServer(ThreadingHTTPServer):
    """A model server on loopback that records each request it answers."""

    daemon_threads = True

    def __init__(
        self, port: int, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1"
    ) -> None:
        super().__init__((host, port), handler)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        #: the provider's limits and counts (none by default)
        self.provider = Provider()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def record(self, **fields: Any) -> dict[str, Any]:
        """Append a record of a request, numbered from 1 (``n``), and return it."""
        with self.lock:
            record = {"n": len(self.requests) + 1, **fields}
            self.requests.append(record)
        return record


class JsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, quiet, with JSON request bodies and whole responses."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the servers record their requests themselves

    def read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        return body if isinstance(body, dict) else {}

    def send_body(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        self.send_body(status, "application/json", json.dumps(payload).encode())

    def refused(self, tokens: int, api: str = "openai") -> bool:
        """Answer the provider's refusal when its limits refuse this request (True)."""
        server: Any = self.server
        refusal = server.provider.admit(tokens, api)
        if refusal is None:
            return False
        data = json.dumps(refusal.body).encode()
        self.send_response(refusal.status)
        self.send_header("Content-Type", "application/json")
        for name, value in refusal.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return True

    def start_stream(self) -> None:
        """Headers of a server-sent event stream written as it comes, ended by closing."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True


def serve_in_thread(server: S, name: str) -> tuple[S, threading.Thread]:
    """Serve ``server`` from a daemon thread; both, for the caller to shut down."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return server, thread


def stop_serving(server: ThreadingHTTPServer, thread: threading.Thread) -> None:
    """Release the requests a test held (a FakeOpenAI's ``holds``), stop serving, close
    the socket and wait for the thread."""
    for held in getattr(server, "holds", []):
        held.release()
    server.shutdown()
    server.server_close()
    thread.join(5)


def run(make: Callable[[int], ThreadingHTTPServer], doc: str, argv: list[str] | None) -> int:
    """A fake server's command line: ``--port N`` (0: a free one), the port printed."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (the default)")
    args = parser.parse_args(argv)
    server = make(args.port)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
