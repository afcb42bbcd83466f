"""What the fake model servers share: a recording server, a JSON handler, a thread to
serve in, a main."""

from __future__ import annotations

import argparse
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

__all__ = ["FakeServer", "JsonHandler", "counted_lines", "run", "serve_in_thread"]

S = TypeVar("S", bound=ThreadingHTTPServer)

_COUNT = re.compile(r"count to (\d+)")


def counted_lines(request: str) -> list[str] | None:
    """For ``count to N``: the lines ``line 0`` ... ``line N-1`` of the answer every fake
    streams a line every 0.2 s (each with its newline but the last); else None."""
    found = _COUNT.search(request)
    if found is None:
        return None
    return "\n".join(f"line {i}" for i in range(int(found[1]))).splitlines(keepends=True)


class FakeServer(ThreadingHTTPServer):
    """A model server on loopback that records each request it answers."""

    daemon_threads = True

    def __init__(
        self, port: int, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1"
    ) -> None:
        super().__init__((host, port), handler)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

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
