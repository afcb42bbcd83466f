"""The gateway: a loopback HTTP server an instance's model calls go through, admitted
fleet-wide, retried through the provider's "slow down" answers, streamed back as they
come, their usage read from the wire."""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from toolfleet.gateway.governor import Governor
from toolfleet.gateway.handler import HOP, GatewayServer, Handler
from toolfleet.gateway.meter import Meter
from toolfleet.gateway.upstream import KEY_HEADERS, Upstream
from toolfleet.gateway.wire import UsageReader
from toolfleet.models import Usage

if TYPE_CHECKING:
    from toolfleet.profile import Profile
    from toolfleet.settings import Settings

__all__ = ["Gateway", "start_gateway"]

log = logging.getLogger(__name__)


class Gateway:
    """One worker's gateway to one upstream, on 127.0.0.1 (a free port by default).

    Requests other than POSTs (model lists, probes) pass straight through; each POST is
    a model call: refused when the upstream's quota is gone or the running prompt's
    budget would be passed, else admitted by the :class:`Governor` and sent. The
    provider's key, when the worker has it, replaces whatever key the instance sent."""

    def __init__(
        self, upstream: Upstream, client: Any, meter: Meter | None = None, port: int = 0
    ) -> None:
        self.upstream = upstream
        self.governor = Governor(client, upstream)
        self.meter = meter or Meter()
        self.key = os.environ.get(upstream.key_env) or None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self.server = GatewayServer(("127.0.0.1", port), Handler)
        self.server.gateway = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The gateway's base (``http://127.0.0.1:PORT``), without the upstream's path."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def instance_env(self) -> dict[str, str]:
        """The variables that send the instance's agent here (with a key that opens
        nothing when the gateway holds the real one)."""
        return self.upstream.instance_env(self.url, hide_key=self.key is not None)

    def start(self) -> Gateway:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name=f"gateway-{self.upstream.name}", daemon=True
        )
        self._thread.start()
        log.info("gateway to %s (%s) at %s", self.upstream.name, self.upstream.url, self.url)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    # ---- the upstream side -------------------------------------------------------
    def connection(self) -> http.client.HTTPConnection:
        """This thread's kept-alive connection to the provider."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            scheme, host, port = self.upstream.origin
            kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            conn = kind(host, port, timeout=self.upstream.retry_for)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                self._connections.remove(conn)

    def send(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> http.client.HTTPResponse:
        """The provider's response (headers read, body not), on a kept-alive connection
        (a fresh one when the kept one turns out closed)."""
        for attempt in (1, 2):
            conn = self.connection()
            try:
                conn.request(method, path, body=body or None, headers=headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.drop_connection()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def upstream_headers(self, given: Any, length: int) -> tuple[dict[str, str], str]:
        """Headers for the provider: the agent's, less one hop's, with the fleet's key;
        and the query string's key replaced too (Gemini's ``?key=``)."""
        headers = {k: v for k, v in given.items() if k.lower() not in HOP}
        scheme, host, port = self.upstream.origin
        default = 443 if scheme == "https" else 80
        headers["Host"] = host if port == default else f"{host}:{port}"
        headers["Accept-Encoding"] = "identity"  # the usage is read from the body
        if length:
            headers["Content-Length"] = str(length)
        if self.key is not None:
            name, prefix = KEY_HEADERS[self.upstream.kind]
            headers = {k: v for k, v in headers.items() if k.lower() != name}
            headers[name] = prefix + self.key
        return headers, self.key or ""

    def priced(self, reader: UsageReader, model: str | None) -> Usage:
        price = self.upstream.price(reader.model or model)
        cost = 0.0
        if price is not None:
            cost = round((reader.sent * price[0] + reader.received * price[1]) / 1e6, 10)
        return Usage(sent=reader.sent, received=reader.received, cost=cost)

    def estimate(self, body: bytes, model: str | None) -> tuple[int, float]:
        """A request's tokens (about 4 bytes a token in, and for OpenAI's API the
        ``max_tokens`` it asks for, which its token window counts) and the least it
        costs (the tokens in)."""
        tokens_in = max(1, len(body) // 4)
        price = self.upstream.price(model)
        asked = 0
        if self.upstream.kind == "openai" and b"max_" in body:
            try:
                fields = json.loads(body)
                asked = int(fields.get("max_tokens") or fields.get("max_completion_tokens") or 0)
            except (ValueError, TypeError, AttributeError):
                asked = 0
        return tokens_in + asked, (tokens_in * price[0] / 1e6 if price else 0.0)

    def record(self, usage: Usage) -> None:
        self.meter.add(usage)
        self.governor.count_many(
            {"sent": usage.sent, "received": usage.received, "cost": float(usage.cost)}
        )


def start_gateway(profile: Profile, settings: Settings, client: Any) -> Gateway | None:
    """The started gateway of a worker whose ``profile`` names an upstream (else None);
    ConfigError when the profiles file does not define that upstream."""
    from toolfleet.profiles import get_upstream

    upstream = get_upstream(profile, settings.profiles)
    if upstream is None:
        return None
    gateway = Gateway(upstream, client)
    if gateway.key is None:
        log.warning(
            "%s: no %s in the worker's environment: model calls carry the instance's key",
            upstream.name,
            upstream.key_env,
        )
    return gateway.start()
