"""``toolfleet doctor``: what this host offers a fleet (confinement, an embedded Redis,
the state directory), each with what to do where it is missing."""

from __future__ import annotations

import stat

import click

from toolfleet.errors import ConfigError
from toolfleet.settings import Settings

__all__ = ["doctor", "findings"]


def findings(settings: Settings) -> list[tuple[str, bool, str]]:
    """(what, ok, detail) for each thing this host offers a fleet."""
    from toolfleet.cli.local import redis_server_binary
    from toolfleet.tool.sandbox import sandbox_support

    found: list[tuple[str, bool, str]] = []
    binary, why = sandbox_support()
    found.append(("sandbox strict", binary is not None, f"bubblewrap {binary}" if binary else why))
    try:
        found.append(("embedded redis-server", True, redis_server_binary()))
    except ConfigError as exc:
        found.append(("embedded redis-server", False, exc.message))
    state = settings.kept_state
    if state.is_dir():
        mode = stat.S_IMODE(state.stat().st_mode)
        private = mode & 0o077 == 0
        detail = f"{state} ({mode:04o}{'' if private else ': others can read it'})"
        found.append(("state directory", private, detail))
    else:
        found.append(("state directory", True, f"{state} (made by the first toolfleet up)"))
    return found


@click.command()
def doctor() -> None:
    """Tell what this host offers a fleet: whether tools can be confined (sandbox =
    "strict": bubblewrap and user namespaces), an embedded redis-server for toolfleet
    up, and the state directory (the embedded Redis's password and data). Exits 1 when
    something is missing, naming it."""
    found = findings(Settings.from_env())
    width = max(len(what) for what, _, _ in found)
    for what, ok, detail in found:
        click.echo(f"{what:<{width}}  {'yes' if ok else 'NO '}  {detail}")
    if not all(ok for _, ok, _ in found):
        raise SystemExit(1)
