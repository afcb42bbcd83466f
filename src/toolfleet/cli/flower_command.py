"""``toolfleet flower``: Flower for the fleet, behind credentials and a Host check."""

from __future__ import annotations

import os

import click

from toolfleet.cli.common import error, fail, listen_options
from toolfleet.errors import ToolfleetError

__all__ = ["UNAUTHENTICATED", "flower"]

INSTALL_HINT = "pip install 'toolfleet[flower]'"
#: Flower's switch for an API without credentials, which toolfleet never sets
UNAUTHENTICATED = "FLOWER_UNAUTHENTICATED_API"


@click.command(context_settings={"ignore_unknown_options": True})
@listen_options(5555, "0.0.0.0 is every interface, as in a container.")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    envvar="TOOLFLEET_FLOWER_HOSTS",
    metavar="NAME",
    help="A name Flower answers to in the Host header (repeat; env TOOLFLEET_FLOWER_HOSTS, "
    "space-separated). Default on loopback: localhost, 127.0.0.1, ::1 (any other is "
    "refused: DNS rebinding); elsewhere any.",
)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(port: int, address: str, hosts: tuple[str, ...], flower_args: tuple[str, ...]) -> None:
    """Serve Flower for the fleet on http://ADDRESS:PORT/ until Ctrl-C.

    As `celery -A toolfleet.broker flower`, with Flower's own options after these
    (e.g. --tasks_columns=...) and its FLOWER_* variables, but never open: it needs
    credentials (FLOWER_BASIC_AUTH=user:password, or Flower's OAuth options), refuses
    FLOWER_UNAUTHENTICATED_API, and answers only to its own Host names. Needs the
    flower extra: pip install 'toolfleet[flower]'.
    """
    if os.environ.get(UNAUTHENTICATED, "").strip().lower() not in ("", "0", "false", "no"):
        fail(
            f"{UNAUTHENTICATED} is set: toolfleet's Flower always needs credentials "
            "(FLOWER_BASIC_AUTH=user:password); unset it"
        )
    try:
        from toolfleet.web.flower import serve_flower
    except ImportError:
        fail(f"toolfleet flower needs Flower: {INSTALL_HINT}")
    from toolfleet.broker import app

    argv = [*flower_args, f"--port={port}", f"--address={address}"]
    try:
        serve_flower(app, argv, hosts)
    except OSError as exc:
        fail(f"cannot listen on {address}:{port}: {exc.strerror or exc}")
    except ToolfleetError as exc:
        error(exc)
