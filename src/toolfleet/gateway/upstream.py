"""An upstream: one provider endpoint and key, with the limits the whole fleet keeps."""

from __future__ import annotations

import fnmatch
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["GATEWAY_KEY", "KEY_HEADERS", "Upstream"]

Kind = Literal["openai", "anthropic", "gemini"]

#: the key an instance is given instead of the provider's: it opens nothing
GATEWAY_KEY = "toolfleet-gateway"

#: where each kind of client puts its key (header name, and its prefix)
KEY_HEADERS: dict[str, tuple[str, str]] = {
    "openai": ("authorization", "Bearer "),
    "anthropic": ("x-api-key", ""),
    "gemini": ("x-goog-api-key", ""),
}

#: the variables pointing each kind of agent at an endpoint, and holding its key
_URL_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_BASE", "OPENAI_BASE_URL"),
    "anthropic": ("ANTHROPIC_BASE_URL",),
    "gemini": ("GOOGLE_GEMINI_BASE_URL", "GEMINI_BASE_URL"),
}
_KEY_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY",),
}


class Upstream(BaseModel):
    """A provider endpoint the fleet's agents reach through their worker's gateway.

    Limits are the fleet's, kept in Redis and shared by every gateway: a request over
    one waits its turn; none is failed for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Kind = Field(description="The API the agents speak: openai, anthropic or gemini.")
    url: str = Field(
        description="The provider's base URL as an agent would be given it, e.g. "
        "https://api.openai.com/v1; the agents get the gateway's with the same path."
    )
    api_key_env: str | None = Field(
        None,
        description="The worker's variable holding the provider key (default: the kind's, "
        "e.g. OPENAI_API_KEY). The gateway sends it; the instances never see it.",
    )
    rpm: int | None = Field(None, gt=0, description="Requests per minute, fleet-wide.")
    tpm: int | None = Field(None, gt=0, description="Tokens per minute, fleet-wide.")
    window: int = Field(
        60, gt=0, description="Seconds of the provider's windows that rpm and tpm count in."
    )
    concurrency: int | None = Field(
        None, gt=0, description="Requests at once, fleet-wide (lowered on 429s, raised again)."
    )
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Money per million tokens (in, out) by model name or pattern "
        "('gpt-4o*', '*'): what the usage read from the wire costs.",
    )
    retry_for: float = Field(
        600.0, gt=0, description="Seconds a request is retried through 429/529/503 answers."
    )
    quota_pause: float = Field(
        3600.0,
        gt=0,
        description="Seconds new work on this upstream is refused after the provider said "
        "its quota is exhausted (ProviderQuotaExhausted).",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port][/path], not {url!r}")
        return url.rstrip("/")

    @property
    def origin(self) -> tuple[str, str, int]:
        """Scheme, host and port of the provider."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.scheme, parts.hostname or "", port

    @property
    def path(self) -> str:
        """The path of ``url`` ('/v1'), kept in the gateway's URL."""
        return urlsplit(self.url).path.rstrip("/")

    @property
    def key_env(self) -> str:
        return self.api_key_env or _KEY_VARS[self.kind][0]

    def price(self, model: str | None) -> tuple[float, float] | None:
        """Money per million tokens (in, out) of ``model``: its own entry, else the first
        pattern that matches it."""
        if model and model in self.prices:
            return self.prices[model]
        for pattern, price in self.prices.items():
            if fnmatch.fnmatchcase(model or "", pattern):
                return price
        return None

    def instance_env(self, gateway: str, hide_key: bool = True) -> dict[str, str]:
        """The variables that send an agent of this kind to the gateway at ``gateway``
        (``http://127.0.0.1:PORT``), and (``hide_key``) give it a key that opens nothing."""
        env = {var: gateway + self.path for var in _URL_VARS[self.kind]}
        if hide_key:
            env.update({var: GATEWAY_KEY for var in _KEY_VARS[self.kind]})
        return env
