"""Live output: ``toolfleet tail WORKER`` and the printing of ``submit --follow``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import click

from toolfleet.cli.common import connect, error, fail
from toolfleet.errors import ToolfleetError

__all__ = ["follow_stream", "tail"]


def follow_stream(chunks: Iterator[str]) -> str:
    """Print ``chunks`` as they come; all of it."""
    printed = []
    for chunk in chunks:
        click.echo(chunk, nl=False)
        sys.stdout.flush()
        printed.append(chunk)
    return "".join(printed)


@click.command()
@click.argument("worker")
@click.option("--interval", type=float, default=0.5, show_default=True, hidden=True)
def tail(worker: str, interval: float) -> None:
    """Follow what WORKER (name@host, or a name) runs: each prompt's output as it comes.

    Ctrl-C ends it. Prompts answered within 100 ms show whole when they end.
    """
    try:
        with connect() as fleet:
            shown: set[str] = set()
            known = [h.worker for h in fleet.status()]
            if not any(worker in (name, name.split("@")[0]) for name in known):
                names = ", ".join(sorted(known)) or "none is reporting"
                fail(f"no worker {worker!r} (workers: {names})")
            click.echo(f"following {worker} (Ctrl-C ends)", err=True)
            while True:
                records = [
                    h for h in fleet.status() if worker in (h.worker, h.worker.split("@")[0])
                ]
                running = records[0].prompt_id if records else None
                if running is None or running in shown:
                    time.sleep(interval)
                    continue
                shown.add(running)
                click.echo(f"--- {records[0].worker}: prompt {running}", err=True)
                handle = fleet.handle(running, records[0].profile)
                if not follow_stream(handle.stream()).endswith("\n"):
                    click.echo()
    except ToolfleetError as exc:
        error(exc)
    except KeyboardInterrupt:
        pass
