"""Tool profiles: the built-ins, and those of a TOML file (``TOOLFLEET_PROFILES``)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from toolfleet.builtins import AIDER_USAGE, BUILTIN_PROFILES
from toolfleet.errors import ConfigError
from toolfleet.profile import USAGE_GROUPS, Profile

if TYPE_CHECKING:
    from toolfleet.gateway.upstream import Upstream

__all__ = [
    "AIDER_USAGE",
    "BUILTIN_PROFILES",
    "USAGE_GROUPS",
    "Profile",
    "get_profile",
    "get_upstream",
    "load_profiles",
    "load_upstreams",
]


def _said(exc: ValidationError) -> str:
    """Pydantic's errors in one line: ``field: problem; field: problem``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'value'}: "
        + str(e["msg"]).removeprefix("Value error, ")
        for e in exc.errors()
    )


def _read(path: Path | str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read profiles file {path}: {exc}") from None


def load_upstreams(path: Path | str | None = None) -> dict[str, Upstream]:
    """The model upstreams of the profiles file at ``path``: one ``[upstreams.NAME]``
    table each (kind, url, limits, prices; see :class:`Upstream`)."""
    from toolfleet.gateway.upstream import Upstream

    if path is None:
        return {}
    tables = _read(path).get("upstreams", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: [upstreams] must be a table of tables")
    found: dict[str, Upstream] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: upstreams.{name} must be a table")
        try:
            found[name] = Upstream.model_validate({**table, "name": name})
        except ValidationError as exc:
            raise ConfigError(f"{path}: upstreams.{name} is invalid: {_said(exc)}") from None
    return found


def get_upstream(profile: Profile, path: Path | str | None = None) -> Upstream | None:
    """The upstream ``profile`` names (None when it names none); ConfigError when the
    profiles file defines no such upstream."""
    if profile.upstream is None:
        return None
    upstreams = load_upstreams(path)
    try:
        return upstreams[profile.upstream]
    except KeyError:
        known = ", ".join(sorted(upstreams)) or "none"
        raise ConfigError(
            f"profile {profile.name!r} names upstream {profile.upstream!r}, which the "
            f"profiles file ({path or 'not set: TOOLFLEET_PROFILES'}) does not define; "
            f"defined: {known}"
        ) from None


def load_profiles(path: Path | str | None = None) -> dict[str, Profile]:
    """Built-in profiles, plus (and overridden by) those of the TOML file at ``path``.

    The file holds one ``[profiles.NAME]`` table per profile; ``extends = "python"``
    starts from another profile and changes only the fields given.
    """
    profiles = dict(BUILTIN_PROFILES)
    if path is None:
        return profiles
    data = _read(path)
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: [profiles] must be a table of tables")
    for name, table in tables.items():
        profiles[name] = _from_table(name, table, profiles, path)
    upstreams = load_upstreams(path)  # checked here too: an error shows before any worker
    for profile in profiles.values():
        if profile.upstream is not None and profile.upstream not in upstreams:
            known = ", ".join(sorted(upstreams)) or "none"
            raise ConfigError(
                f"{path}: profiles.{profile.name} names upstream {profile.upstream!r}, "
                f"which the file does not define; defined: {known}"
            )
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
        raise ConfigError(f"{path}: profiles.{name} is invalid: {_said(exc)}") from None


def get_profile(name: str, path: Path | str | None = None) -> Profile:
    """The profile called ``name`` or a :class:`ConfigError` listing the known ones."""
    profiles = load_profiles(path)
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise ConfigError(f"unknown profile {name!r}; known profiles: {known}") from None
