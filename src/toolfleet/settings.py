"""Typed settings read from ``TOOLFLEET_*`` environment variables, never at import time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_BROKER_URL", "URL_FIELDS", "Settings", "redact_url"]

DEFAULT_BROKER_URL = "redis://localhost:6379/0"

#: fields whose value may carry a password: masked wherever the settings are shown
URL_FIELDS = frozenset({"broker_url", "result_backend"})


def redact_url(url: str) -> str:
    """``url`` with any password replaced, safe to print or log (each part of a
    ``sentinel://a;sentinel://b`` list)."""
    from kombu.utils.url import maybe_sanitize_url

    return ";".join(str(maybe_sanitize_url(part)) for part in url.split(";"))


class Settings(BaseSettings):
    """Everything a producer or a worker needs to find the fleet.

    Each field is one environment variable: ``broker_url`` is ``TOOLFLEET_BROKER_URL``.
    Shown (repr, str, logs, Celery's ``inspect conf``), the URLs have their password
    masked; the fields themselves hold the real URLs.
    """

    model_config = SettingsConfigDict(env_prefix="TOOLFLEET_", extra="ignore", frozen=True)

    broker_url: str = Field(DEFAULT_BROKER_URL, description="Redis URL of the task queue.")
    result_backend: str = Field(
        "", description="Redis URL of results and health records (default: broker_url)."
    )
    sentinel_master: str = Field(
        "",
        description="Name of the Redis master the sentinels of sentinel:// URLs watch.",
    )
    heartbeat_interval: float = Field(
        2.0,
        ge=0,
        description="Seconds between health records (TTL 3x this); 0 turns them off.",
    )
    profiles: Path | None = Field(None, description="TOML file with extra tool profiles.")
    state_dir: Path | None = Field(
        None,
        description="Directory of the fleet's state on this machine, the embedded Redis's "
        "password among it (default: $XDG_STATE_HOME/toolfleet, ~/.local/state/toolfleet).",
    )
    visibility_timeout: int = Field(
        3600, gt=0, description="Seconds before Redis redelivers an unacknowledged prompt."
    )
    result_expires: int = Field(86400, gt=0, description="Seconds a result is kept.")
    session_ttl: float = Field(30.0, gt=0, description="Seconds a session lease lives unrenewed.")
    task_events: bool = Field(
        True,
        description="Send Celery task events (Flower's task list and the exporter's "
        "prompt durations need them); false saves a few Redis writes per prompt.",
    )
    stream_interval: float = Field(
        0.1,
        ge=0,
        description="Seconds between a running prompt's output chunks (its Redis Stream); "
        "0 turns streaming off.",
    )

    @field_validator("profiles", "state_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _default_backend(self) -> Settings:
        if not self.result_backend:
            object.__setattr__(self, "result_backend", self.broker_url)
        sentinel = [u for u in (self.broker_url, self.result_backend) if u.startswith("sentinel:")]
        for url in sentinel:
            if any(not part.strip().startswith("sentinel://") for part in url.split(";")):
                raise ValueError(
                    f"{redact_url(url)}: every part of a sentinel URL is sentinel://host:port"
                )
        if sentinel and not self.sentinel_master:
            raise ValueError(
                "sentinel:// URLs need the name of the master the sentinels watch: "
                "set TOOLFLEET_SENTINEL_MASTER"
            )
        return self

    @classmethod
    def from_env(cls) -> Settings:
        """Read the settings from the environment (and nothing else); ConfigError names
        the variable that is wrong."""
        from pydantic import ValidationError

        from toolfleet.errors import ConfigError

        try:
            return cls().with_kept_passwords()
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                where = "".join(f"TOOLFLEET_{str(part).upper()}" for part in err["loc"][:1])
                message = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"{where}: {message}" if where else message)
            raise ConfigError("; ".join(problems)) from None

    @property
    def kept_state(self) -> Path:
        """Where this machine's fleet state is kept (``state_dir`` or its default)."""
        from toolfleet.state import default_state_dir

        return self.state_dir or default_state_dir()

    def with_kept_passwords(self) -> Settings:
        """These settings, a local Redis URL without a password given the one
        ``toolfleet up`` keeps for it (so other terminals find its fleet unconfigured)."""
        from toolfleet.state import with_password

        found = {name: with_password(getattr(self, name), self.kept_state) for name in URL_FIELDS}
        if all(found[name] == getattr(self, name) for name in URL_FIELDS):
            return self
        return self.model_copy(update=found)

    @property
    def health_ttl(self) -> float:
        """Seconds a health record lives without a refresh."""
        return 3 * self.heartbeat_interval

    def to_env(self) -> dict[str, str]:
        """These settings as ``TOOLFLEET_*`` variables, for a child process (the state
        directory resolved: the child looks where this process does)."""
        values = {**self.model_dump(), "state_dir": self.kept_state}
        return {
            f"TOOLFLEET_{name.upper()}": "" if value is None else str(value)
            for name, value in values.items()
        }

    def redacted(self, url: str) -> str:
        """``url`` with any password replaced, safe to print or log."""
        return redact_url(url)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name in URL_FIELDS and value else value
