"""The gateway's request handler: refuse, admit, send and retry one model call, and pass
its answer back as it comes, counting its usage on the way."""

from __future__ import annotations

import http.client
import json
import logging
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from toolfleet.gateway.governor import Ticket
from toolfleet.gateway.wire import UsageReader, is_quota, retry_after
from toolfleet.models import Usage

if TYPE_CHECKING:
    from toolfleet.gateway.proxy import Gateway

__all__ = ["HOP", "GatewayServer", "Handler"]

log = logging.getLogger(__name__)

#: headers of one hop, never passed on (RFC 9110 7.6.1)
HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
    }
)
#: the first wait after a "slow down" answer that names no time, doubled each time, and
#: its cap
_BACKOFF, _BACKOFF_CAP = 1.0, 30.0


class GatewayServer(ThreadingHTTPServer):
    """The gateway's HTTP server: a thread per agent connection."""

    daemon_threads = True
    gateway: Gateway


def _model_of(path: str, body: bytes) -> str | None:
    if b'"model"' in body[:4096] or b'"model"' in body:
        try:
            found = json.loads(body).get("model")
        except (ValueError, AttributeError):
            found = None
        if isinstance(found, str):
            return found
    if "/models/" in path:  # Gemini: /v1beta/models/NAME:generateContent
        return path.split("/models/", 1)[1].split(":", 1)[0] or None
    return None


class Handler(BaseHTTPRequestHandler):
    """One agent connection's requests."""

    server: GatewayServer
    protocol_version = "HTTP/1.1"
    server_version = "toolfleet-gateway"
    # headers and body go in separate writes: without this, Nagle's algorithm and the
    # agent's delayed ACK hold each answer back 40 ms
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("gateway: " + format, *args)

    # every method goes the same way
    def do_GET(self) -> None:
        self.forward()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def refuse(self, status: int, kind: str, message: str) -> None:
        """An error in the shape every provider's clients read (``error.type`` and
        ``error.message``; Anthropic's top-level ``type``)."""
        body = json.dumps(
            {"type": "error", "error": {"type": kind, "code": kind, "message": message}}
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self) -> None:
        gw = self.server.gateway
        body = self.read_body()
        path = self.path
        headers, key = gw.upstream_headers(self.headers, len(body))
        if key and "key=" in path:
            base, _, query = path.partition("?")
            pairs = [(k, key if k == "key" else v) for k, v in parse_qsl(query, True)]
            path = f"{base}?{urlencode(pairs)}"
        if self.command != "POST":  # not a model call: straight through
            self.relay_plain(gw, path, headers, body)
            return
        model = _model_of(urlsplit(path).path, body)
        said = gw.governor.quota_refused()
        if said is not None:
            self.refuse(
                403, "insufficient_quota", gw.meter.quota_gone(gw.upstream.name, said).message
            )
            return
        tokens, least = gw.estimate(body, model)
        refused = gw.meter.refusal(least)
        if refused is not None:
            self.refuse(400, "budget_spent", refused.message)
            return
        self.call(gw, path, headers, body, tokens, model)

    def call(
        self,
        gw: Gateway,
        path: str,
        headers: dict[str, str],
        body: bytes,
        tokens: int,
        model: str | None,
    ) -> None:
        """Send a model call until the provider takes it (or ``retry_for`` passes)."""
        deadline = time.time() + gw.upstream.retry_for
        backoff = _BACKOFF
        while True:
            ticket = gw.governor.admit(tokens)
            try:
                response = gw.send(self.command, path, headers, body)
            except OSError as exc:  # the provider is away: wait and try again
                gw.drop_connection()
                gw.governor.done(ticket)
                if time.time() + backoff > deadline:
                    self.refuse(502, "upstream_unreachable", f"{gw.upstream.name}: {exc}")
                    return
                gw.governor.count("retries")
                time.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_CAP)
                continue
            if response.status < 400:
                self.relay(gw, response, ticket, model)
                return
            answer = response.read()
            if response.will_close:
                gw.drop_connection()
            wait = retry_after(response.status, response.headers, answer)
            if wait is not None and time.time() + max(wait, backoff) < deadline:
                hold = wait or backoff
                backoff = min(backoff * 2, _BACKOFF_CAP)
                gw.governor.done(ticket, throttled=True, hold=hold)
                gw.governor.count("throttled")
                gw.governor.count("retries")
                log.info(
                    "%s answered %s: retrying in %.1f s (hidden from the agent)",
                    gw.upstream.name,
                    response.status,
                    hold,
                )
                continue
            gw.governor.done(ticket)
            if is_quota(response.status, answer):
                said = answer[:300].decode("utf-8", "replace")
                gw.governor.refuse_quota(said)
                error = gw.meter.quota_gone(gw.upstream.name, said)
                log.warning("%s: the provider's quota is exhausted: %s", gw.upstream.name, said)
                # 403, not the provider's 429: an agent retries a 429 for a minute,
                # and no retry helps here
                self.refuse(403, "insufficient_quota", error.message)
                return
            self.send_whole(response, answer)
            return

    def send_whole(self, response: http.client.HTTPResponse, body: bytes) -> None:
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def relay_plain(self, gw: Gateway, path: str, headers: dict[str, str], body: bytes) -> None:
        try:
            response = gw.send(self.command, path, headers, body)
            answer = response.read() if self.command != "HEAD" else b""
        except OSError as exc:
            gw.drop_connection()
            self.refuse(502, "upstream_unreachable", f"{gw.upstream.name}: {exc}")
            return
        if response.will_close:
            gw.drop_connection()
        self.send_whole(response, answer)

    def relay(
        self, gw: Gateway, response: http.client.HTTPResponse, ticket: Ticket, model: str | None
    ) -> None:
        """Pass the answer on: a stream as it comes (chunked), anything else whole; its
        usage is read and counted before the agent gets the bytes that carry it."""
        reader = UsageReader(response.headers.get("Content-Type") or "")
        counted = Usage()
        try:
            if not reader.streamed:
                body = response.read()
                reader.feed(body)
                reader.close()
                counted = self.count(gw, reader, model, counted, ticket)
                self.send_whole(response, body)
                return
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP:
                    self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            agent_gone = False
            while True:
                data = response.read1(65536)
                if not data:
                    break
                reader.feed(data)
                counted = self.count(gw, reader, model, counted, ticket)
                gw.governor.renew(ticket)
                if agent_gone:
                    continue  # read on: the usage is still the account's
                try:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                except (TimeoutError, BrokenPipeError, ConnectionResetError):
                    agent_gone = True
            reader.close()
            counted = self.count(gw, reader, model, counted, ticket)
            if not agent_gone:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except OSError as exc:  # the provider broke off: the agent sees the answer end
            log.warning("%s: the answer broke off: %s", gw.upstream.name, exc)
            gw.drop_connection()
            self.close_connection = True
        finally:
            if response.will_close:
                gw.drop_connection()
            gw.governor.done(ticket)
            if reader.found:
                gw.governor.tokens_used(ticket, counted.sent + counted.received)

    @staticmethod
    def count(
        gw: Gateway, reader: UsageReader, model: str | None, counted: Usage, ticket: Ticket
    ) -> Usage:
        """Count what ``reader`` found beyond ``counted``; the new total counted."""
        if not reader.found or (reader.sent, reader.received) == (counted.sent, counted.received):
            return counted
        now = gw.priced(reader, model)
        gw.record(
            Usage(
                sent=max(0, now.sent - counted.sent),
                received=max(0, now.received - counted.received),
                cost=max(0.0, round(now.cost - counted.cost, 10)),
            )
        )
        return now
