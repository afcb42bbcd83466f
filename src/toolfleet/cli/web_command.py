"""``toolfleet web``: a live page of the fleet, served over HTTP."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import click

from toolfleet.cli.common import error, fail, listen_options
from toolfleet.errors import ToolfleetError
from toolfleet.settings import Settings
from toolfleet.web.access import TOKEN_ENV

__all__ = ["INSTALL_HINT", "web", "web_url"]

INSTALL_HINT = "pip install 'toolfleet[flower]'"


def web_url(address: str, port: int, path: str = "/") -> str:
    """The dashboard's address for a browser (a wildcard address as loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address, address)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


@click.command()
@listen_options(8088, "any but loopback needs a token.")
@click.option(
    "--token-env",
    default=TOKEN_ENV,
    show_default=True,
    metavar="NAME",
    help="Environment variable holding the token (16 characters at least).",
)
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="git checkout the apply button merges changes into (default: the current "
    "directory, if it is one).",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 60.0),
    default=0.5,
    show_default=True,
    help="Seconds between reads of the fleet (one read serves every viewer).",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    envvar="TOOLFLEET_WEB_HOSTS",
    metavar="NAME",
    help="A name the dashboard answers to in the Host header (repeat; env "
    "TOOLFLEET_WEB_HOSTS, space-separated). Default on loopback: localhost, 127.0.0.1, "
    "::1 (any other is refused: DNS rebinding); elsewhere any.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    envvar="TOOLFLEET_WEB_TRUSTED_PROXIES",
    metavar="ADDRESS",
    help="A reverse proxy whose X-Forwarded-Proto is believed (repeat; env "
    "TOOLFLEET_WEB_TRUSTED_PROXIES): behind it over TLS, the login cookie is Secure.",
)
@click.option("--loglevel", default="WARNING", show_default=True, help="Log level (stderr).")
def web(
    port: int,
    address: str,
    token_env: str,
    repo: Path | None,
    interval: float,
    hosts: tuple[str, ...],
    trusted_proxies: tuple[str, ...],
    loglevel: str,
) -> None:
    """Serve a live page of the fleet on http://ADDRESS:PORT/ until Ctrl-C.

    Every instance (state, session, running prompt and its output, latency, memory,
    usage) with cancel and restart buttons, sessions, map runs in progress, and changes
    to review with apply and discard. Every request needs the token from the variable
    --token-env names (TOOLFLEET_WEB_TOKEN): a login form asks for it once. Without one
    it listens on loopback only, with a random token it prints as a login link. Needs
    tornado (the flower extra): pip install 'toolfleet[flower]'.
    """
    try:
        import tornado  # noqa: F401
    except ImportError:
        fail(f"toolfleet web needs tornado: {INSTALL_HINT}")
    from toolfleet.client.unavailable import ensure_reachable
    from toolfleet.web.access import access_for
    from toolfleet.web.app import Dashboard, serve

    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
        access = access_for(
            address,
            os.environ.get(token_env) or None,
            token_env,
            hosts=hosts,
            trusted_proxies=trusted_proxies,
        )
        ensure_reachable(settings)
    except ToolfleetError as exc:
        error(exc)

    def ready(dashboard: Dashboard, bound: int) -> None:
        click.echo(
            f"toolfleet web: the fleet at {settings.redacted(settings.broker_url)} on "
            f"{web_url(address, bound)} (Ctrl-C stops it)"
        )
        apply = dashboard.meta["apply"]
        if not apply["enabled"]:
            click.echo(f"apply is off: {apply['reason']}")
        if access.generated:  # only this terminal sees it
            click.echo(f"log in with: {web_url(address, bound, '/login?token=' + access.token)}")

    try:
        asyncio.run(
            serve(
                settings,
                access,
                address=address,
                port=port,
                repo=repo,
                interval=interval,
                ready=ready,
            )
        )
    except OSError as exc:
        fail(f"cannot listen on {address}:{port}: {exc.strerror or exc}")
    except ToolfleetError as exc:
        error(exc)
