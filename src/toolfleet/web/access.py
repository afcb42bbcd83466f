"""Who may use the dashboard (a token; loopback by default) and the secrets kept off it."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from toolfleet.errors import ConfigError
from toolfleet.settings import Settings

__all__ = ["MIN_TOKEN", "TOKEN_ENV", "Access", "Scrubber", "access_for", "is_loopback"]

#: the environment variable holding the dashboard's token (``--token-env`` names another)
TOKEN_ENV = "TOOLFLEET_WEB_TOKEN"
#: the shortest token accepted
MIN_TOKEN = 16
#: secrets shorter than this are not scrubbed from text (they would mangle everything)
_MIN_SCRUBBED = 6


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


def access_for(address: str, token: str | None, token_env: str = TOKEN_ENV) -> Access:
    """The access rule for a dashboard on ``address``: the configured ``token``, or on
    loopback a random one; ConfigError for a short token, or none off loopback."""
    if token:
        if len(token) < MIN_TOKEN:
            raise ConfigError(
                f"{token_env} is too short: {MIN_TOKEN} characters at least "
                "(e.g. openssl rand -hex 32)"
            )
        return Access(token)
    if not is_loopback(address):
        raise ConfigError(
            f"toolfleet web on {address} needs a token: set {token_env} "
            "(e.g. openssl rand -hex 32); without one it listens on loopback only"
        )
    return Access(secrets.token_urlsafe(24), generated=True)


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
