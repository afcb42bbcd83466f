"""What the fake model servers share: a JSON handler, a thread to serve in, a main."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

__all__ = ["JsonHandler", "run", "serve_in_thread"]

S = TypeVar("S", bound=ThreadingHTTPServer)


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
