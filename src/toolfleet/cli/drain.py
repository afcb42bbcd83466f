"""``toolfleet drain``: stop workers taking work and wait for what they hold (a preStop hook)."""

from __future__ import annotations

import socket

import click

from toolfleet.cli.common import connect, error, fail, on_this_host
from toolfleet.client.drain import drain as drain_workers
from toolfleet.errors import ToolfleetError
from toolfleet.models import InstanceHealth

__all__ = ["drain"]


@click.command()
@click.option(
    "--this-host",
    is_flag=True,
    help="The workers on this host (a container's own preStop hook).",
)
@click.option(
    "--worker", "-w", "workers", multiple=True, help="This worker (name@host; repeatable)."
)
@click.option("--profile", "-p", default=None, help="Only workers of this profile.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for running prompts and sessions.",
)
def drain(this_host: bool, workers: tuple[str, ...], profile: str | None, timeout: float) -> None:
    """Stop workers taking new prompts and sessions, then wait until none of them runs
    a prompt or holds a session. Exit 0 when drained, else 1 with what they wait for.

    A drained worker no longer consumes its profile's shared queue, but still serves the
    session holding it (its direct queue) until that session is closed. Meant for a
    worker about to stop: it stays drained until restarted.
    """
    if not (this_host or workers or profile):
        raise click.UsageError("name the workers: --this-host, --worker NAME or --profile NAME")
    host = socket.gethostname()
    where = [f"profile {profile!r}" if profile else "", f"on {host}" if this_host else ""]
    what = " ".join(w for w in where if w) or "the workers named"

    def chosen(record: InstanceHealth) -> bool:
        return (
            (not this_host or on_this_host(record.worker))
            and (not workers or record.worker in workers)
            and (profile is None or record.profile == profile)
        )

    try:
        with connect() as fleet:
            result = drain_workers(fleet, chosen, timeout=timeout, progress=click.echo)
    except ToolfleetError as exc:
        error(exc)
    if not result.workers:
        click.echo(f"nothing to drain: no instance of {what} is reporting")
        return
    if result.drained:
        click.echo(f"drained {len(result.workers)} worker(s) in {result.elapsed:.1f} s")
        return
    waiting = "; ".join(f"{worker}: {why}" for worker, why in sorted(result.waiting.items()))
    fail(f"not drained after {timeout:g} s: {waiting}")
