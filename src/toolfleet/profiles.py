"""Tool profiles: the built-ins, and those of a TOML file (``TOOLFLEET_PROFILES``)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from toolfleet.builtins import AIDER_USAGE, BUILTIN_PROFILES
from toolfleet.errors import ConfigError
from toolfleet.profile import USAGE_GROUPS, Profile

__all__ = [
    "AIDER_USAGE",
    "BUILTIN_PROFILES",
    "USAGE_GROUPS",
    "Profile",
    "get_profile",
    "load_profiles",
]


def load_profiles(path: Path | str | None = None) -> dict[str, Profile]:
    """Built-in profiles, plus (and overridden by) those of the TOML file at ``path``.

    The file holds one ``[profiles.NAME]`` table per profile; ``extends = "python"``
    starts from another profile and changes only the fields given.
    """
    profiles = dict(BUILTIN_PROFILES)
    if path is None:
        return profiles
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read profiles file {path}: {exc}") from None
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: [profiles] must be a table of tables")
    for name, table in tables.items():
        profiles[name] = _from_table(name, table, profiles, path)
    return profiles


def _from_table(name: str, table: Any, known: dict[str, Profile], path: Path | str) -> Profile:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: profiles.{name} must be a table")
    fields = dict(table)
    base_name = fields.pop("extends", None)
    base: dict[str, Any] = {}
    if base_name is not None:
        if base_name not in known:
            raise ConfigError(f"{path}: profiles.{name} extends unknown profile {base_name!r}")
        base = known[base_name].model_dump()
    try:
        return Profile.model_validate({**base, **fields, "name": name})
    except ValidationError as exc:
        raise ConfigError(f"{path}: profiles.{name} is invalid: {exc}") from None


def get_profile(name: str, path: Path | str | None = None) -> Profile:
    """The profile called ``name`` or a :class:`ConfigError` listing the known ones."""
    profiles = load_profiles(path)
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise ConfigError(f"unknown profile {name!r}; known profiles: {known}") from None
