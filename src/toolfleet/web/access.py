"""Who may use the dashboard (a token; loopback by default) and the secrets kept off it."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from toolfleet.errors import ConfigError
from toolfleet.settings import Settings
from toolfleet.state import LOCAL_HOSTS

__all__ = [
    "MIN_TOKEN",
    "TOKEN_ENV",
    "Access",
    "Scrubber",
    "Sessions",
    "access_for",
    "allowed_hosts",
    "host_allowed",
    "is_loopback",
]

#: the environment variable holding the dashboard's token (``--token-env`` names another)
TOKEN_ENV = "TOOLFLEET_WEB_TOKEN"
#: the shortest token accepted
MIN_TOKEN = 16
#: secrets shorter than this are not scrubbed from text (they would mangle everything)
_MIN_SCRUBBED = 6


def allowed_hosts(address: str, hosts: Iterable[str]) -> frozenset[str]:
    """The Host names a server on ``address`` answers to: ``hosts``, or on loopback the
    loopback names (a DNS rebinding names another), elsewhere any (empty)."""
    named = frozenset(h.strip().lower() for h in hosts if h.strip())
    if named or not is_loopback(address):
        return named
    return LOCAL_HOSTS | {address.lower()}


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` (``name`` or ``name:port``) names this server:
    its name is in ``allowed`` (empty: any name)."""
    if not allowed:
        return True
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:port
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    return name.rstrip(".") in allowed


def is_loopback(address: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """The dashboard's token: every request needs it (a cookie the login sets, or an
    ``Authorization: Bearer`` header), and every action a POST carrying it."""

    token: str = field(repr=False)
    #: made up at start (no token configured, loopback only): printed once as a login link
    generated: bool = False
    #: the Host names requests must carry (empty: any); see :func:`access_for`
    hosts: frozenset[str] = frozenset()
    #: addresses of reverse proxies whose ``X-Forwarded-Proto`` is believed
    trusted_proxies: frozenset[str] = frozenset()

    def came_over_tls(self, protocol: str, peer: str, forwarded_proto: str | None) -> bool:
        """Whether a request reached us over TLS: directly, or through a trusted proxy
        that says so."""
        if protocol == "https":
            return True
        return peer in self.trusted_proxies and (forwarded_proto or "").lower() == "https"

    def accepts(self, given: str | None) -> bool:
        """Whether ``given`` is the token (in constant time)."""
        if not given:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    @property
    def cookie_secret(self) -> str:
        """The key signing the login cookie: derived from the token, so that a new token
        ends every login made with the old one (the cookie never holds the token)."""
        return hmac.new(self.token.encode(), b"toolfleet-web cookie", hashlib.sha256).hexdigest()


def access_for(
    address: str,
    token: str | None,
    token_env: str = TOKEN_ENV,
    *,
    hosts: Iterable[str] = (),
    trusted_proxies: Iterable[str] = (),
) -> Access:
    """The access rule for a dashboard on ``address``: the configured ``token``, or on
    loopback a random one; ConfigError for a short token, or none off loopback. Requests
    must name one of ``hosts`` in their Host header; by default, on loopback, the
    loopback names (a DNS rebinding names another), elsewhere any."""
    allowed = allowed_hosts(address, hosts)
    proxies = frozenset(p.strip() for p in trusted_proxies if p.strip())
    if token:
        if len(token) < MIN_TOKEN:
            raise ConfigError(
                f"{token_env} is too short: {MIN_TOKEN} characters at least "
                "(e.g. openssl rand -hex 32)"
            )
        return Access(token, hosts=allowed, trusted_proxies=proxies)
    if not is_loopback(address):
        raise ConfigError(
            f"toolfleet web on {address} needs a token: set {token_env} "
            "(e.g. openssl rand -hex 32); without one it listens on loopback only"
        )
    return Access(secrets.token_urlsafe(24), generated=True, hosts=allowed, trusted_proxies=proxies)


class Sessions:
    """The logins of one dashboard: a random id each (the signed cookie's value, never
    a constant), ended by logging out or after ``ttl`` seconds."""

    def __init__(self, ttl: float = 86400.0) -> None:
        self.ttl = ttl
        self._live: dict[str, float] = {}

    def open(self) -> str:
        """A new login's id."""
        now = time.monotonic()
        self._live = {sid: end for sid, end in self._live.items() if end > now}
        sid = secrets.token_urlsafe(24)
        self._live[sid] = now + self.ttl
        return sid

    def valid(self, sid: str | None) -> bool:
        return sid is not None and self._live.get(sid, 0.0) > time.monotonic()

    def end(self, sid: str | None) -> None:
        if sid is not None:
            self._live.pop(sid, None)


class Scrubber:
    """Replaces secrets (the token, Redis passwords) with ``**`` in whatever the page
    gets, a second line of defence behind the masked URLs."""

    def __init__(self, hidden: Iterable[str]) -> None:
        found = {s for s in hidden if len(s) >= _MIN_SCRUBBED}
        self.hidden = sorted(found, key=len, reverse=True)

    @classmethod
    def of(cls, settings: Settings, access: Access) -> Scrubber:
        """The token and every password in the settings' Redis URLs."""
        hidden = [access.token]
        for url in (settings.broker_url, settings.result_backend):
            for part in url.split(";"):
                password = urlparse(part.strip()).password
                if password:
                    hidden += [password, unquote(password)]
        return cls(hidden)

    def text(self, value: str) -> str:
        for secret in self.hidden:
            if secret in value:
                value = value.replace(secret, "**")
        return value

    def data(self, value: Any) -> Any:
        """``value`` (JSON-like) with every string scrubbed."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value
