"""What every command shares: one-line errors, a connected fleet, the console."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import click
from rich.console import Console

from toolfleet.client.fleet import Fleet
from toolfleet.client.unavailable import ensure_reachable
from toolfleet.errors import ToolfleetError

__all__ = ["connect", "console", "error", "fail", "listen_options", "on_this_host"]

F = TypeVar("F", bound=Callable[..., object])


def listen_options(port: int, address_note: str) -> Callable[[F], F]:
    """A serving command's ``--port`` (default ``port``) and ``--address`` (loopback by
    default; ``address_note`` says what another address means)."""

    def decorate(command: F) -> F:
        command = click.option(
            "--address",
            default="127.0.0.1",
            show_default=True,
            help=f"Address to listen on; {address_note}",
        )(command)
        return click.option(
            "--port", default=port, show_default=True, type=click.IntRange(0, 65535)
        )(command)

    return decorate


console = Console()


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def error(exc: ToolfleetError) -> NoReturn:
    """Exit with ``exc`` as one line: ``error: ErrorType: message``."""
    fail(f"{type(exc).__name__}: {exc.message}")


def on_this_host(worker: str) -> bool:
    """Whether ``worker`` (a node name ``name@host``) runs on this host."""
    return worker.rpartition("@")[2] == socket.gethostname()


def connect(prompt: tuple[str, str] | None = None) -> Fleet:
    """The environment's fleet once its Redis answers (else RedisUnavailable, at once);
    a ``(text, profile)`` given is checked first (PromptRejected needs no Redis)."""
    fleet = Fleet.from_env()
    try:
        if prompt is not None:
            fleet.validate(*prompt)
        ensure_reachable(fleet.settings)
    except ToolfleetError:
        fleet.close()
        raise
    return fleet
