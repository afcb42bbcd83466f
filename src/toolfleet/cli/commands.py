"""The ``toolfleet`` command line (click)."""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid
from typing import cast

import click
from rich.live import Live

from toolfleet.cli.changes import changes
from toolfleet.cli.common import connect, console, error, fail, on_this_host
from toolfleet.cli.doctor import doctor
from toolfleet.cli.drain import drain
from toolfleet.cli.exporter_command import exporter
from toolfleet.cli.flower_command import flower
from toolfleet.cli.live import follow_stream, tail
from toolfleet.cli.local_commands import demo, up, worker
from toolfleet.cli.map import map_command
from toolfleet.cli.render import gateway_lines, profiles_table, status_plain, status_table
from toolfleet.cli.web_command import web
from toolfleet.client.fleet import Fleet
from toolfleet.client.sessions import Strategy
from toolfleet.client.unavailable import unavailable
from toolfleet.errors import ToolfleetError
from toolfleet.profiles import load_profiles
from toolfleet.settings import Settings

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toolfleet")
def cli() -> None:
    """Run fleets of persistent interactive command-line tools behind Celery workers.

    Settings come from TOOLFLEET_* environment variables (TOOLFLEET_BROKER_URL, ...).
    """


@cli.command()
@click.argument("text")
@click.option("--profile", "-p", default="python", show_default=True)
@click.option("--worker", "-w", default=None, help="Send to this worker (name@host) only.")
@click.option("--session", "-s", default=None, help="Session id to send into.")
@click.option("--timeout", type=float, default=None, help="Prompt deadline inside the tool.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for the result and print its output, or print the prompt id.",
)
@click.option("--wait-timeout", type=float, default=60.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.option("--follow", "-f", is_flag=True, help="Print the output as the tool prints it (live).")
def submit(
    text: str,
    profile: str,
    worker: str | None,
    session: str | None,
    timeout: float | None,
    wait: bool,
    wait_timeout: float,
    as_json: bool,
    follow: bool,
) -> None:
    """Send one prompt (TEXT; '-' reads it from stdin)."""
    if text == "-":
        text = sys.stdin.read()
    try:
        with connect((text, profile)) as fleet:
            if session is not None:
                handle = fleet.attach(session).send(text, timeout=timeout)
            else:
                handle = fleet.submit(text, profile, timeout=timeout, worker=worker)
            if not wait:
                click.echo(handle.id)
                return
            if follow and not as_json:
                printed = follow_stream(
                    fleet.handle(handle.id, profile).stream(timeout=wait_timeout)
                )
            result = handle.get(timeout=wait_timeout)
    except ToolfleetError as exc:
        error(exc)
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        if follow:
            if printed and not printed.endswith("\n"):
                click.echo()
        elif result.output:
            click.echo(result.output)
        if not result.ok:
            why = (
                "the tool reported an error"
                if result.exit_status is None
                else f"exit status {result.exit_status}"
            )
            fail(f"ToolError: {why} ({result.worker})")
    if not result.ok:
        sys.exit(1)


@cli.group()
def session() -> None:
    """Open and close sessions: prompts pinned to one instance, in order."""


@session.command("open")
@click.option("--profile", "-p", default="python", show_default=True)
@click.option(
    "--strategy",
    type=click.Choice(["least-busy", "round-robin"]),
    default="least-busy",
    show_default=True,
)
@click.option("--worker", "-w", default=None, help="Lease this worker (name@host).")
@click.option(
    "--ttl",
    type=float,
    default=3600.0,
    show_default=True,
    help="Seconds the lease lives; each submit into it renews it.",
)
@click.option(
    "--wait",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for a free instance.",
)
def session_open(profile: str, strategy: str, worker: str | None, ttl: float, wait: float) -> None:
    """Lease an instance and print the session id (use with submit --session)."""
    try:
        with connect() as fleet:
            how = cast(Strategy, strategy)
            opened = fleet.session(profile, how, worker=worker, ttl=ttl, wait=wait)
    except ToolfleetError as exc:
        error(exc)
    click.echo(opened.id)


@session.command("close")
@click.argument("session_id")
def session_close(session_id: str) -> None:
    """Close a session: its instance is reset and returns to the shared queue."""
    try:
        with connect() as fleet:
            fleet.attach(session_id).close()
    except ToolfleetError as exc:
        error(exc)
    click.echo(f"closed {session_id}")


@cli.command()
@click.option("--profile", "-p", default=None, help="Only this profile.")
@click.option("--json", "as_json", is_flag=True, help="Print the health records as JSON.")
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", default=1.0, show_default=True, help="Refresh interval (s).")
@click.option(
    "--wide", is_flag=True, help="Every column, even wider than the terminal (default: what fits)."
)
def status(profile: str | None, as_json: bool, watch: bool, interval: float, wide: bool) -> None:
    """Show every tool instance: state, session, prompt age, generation, latency, memory.

    On a terminal the table shows what fits its width (worker, state, session and prompt
    age always, whole); piped, every column is printed as plain aligned text.
    """

    with Fleet.from_env() as fleet:
        if as_json:
            click.echo(
                json.dumps([r.model_dump(mode="json") for r in fleet.status(profile)], indent=2)
            )
            return
        if not watch:
            records = fleet.status(profile)
            if console.is_terminal:
                table = status_table(records, width=console.width, wide=wide)
                console.print(table, crop=False)
            else:
                click.echo(status_plain(records))
            if not records:
                console.print("no instances are reporting (is a fleet running? see toolfleet up)")
            if console.is_terminal:
                console.print(f"Redis: {fleet.persistence()}")
                for line in gateway_lines(fleet.gateways()):
                    console.print(line, highlight=False)
            return
        try:
            first = status_table(fleet.status(profile), width=console.width, wide=wide)
            with Live(first, console=console) as live:
                while True:
                    time.sleep(interval)
                    live.update(status_table(fleet.status(profile), width=console.width, wide=wide))
        except KeyboardInterrupt:
            pass


@cli.command()
@click.option("--profile", "-p", default=None, help="Only this profile.")
@click.option(
    "--this-host", is_flag=True, help="Only instances on this host (a container's own healthcheck)."
)
def check(profile: str | None, this_host: bool) -> None:
    """Exit 0 when an instance (of PROFILE) is ready; else 1 with the reason."""
    try:
        with connect() as fleet:
            records = fleet.status(profile)
    except ToolfleetError as exc:
        error(exc)
    what = f"profile {profile!r}" if profile else "the fleet"
    if this_host:
        records = [r for r in records if on_this_host(r.worker)]
        what += f" on {socket.gethostname()}"
    ready = [r for r in records if r.state in ("ready", "busy")]
    if ready:
        click.echo(f"ok: {len(ready)} of {len(records)} instances of {what} ready")
        return
    states = ", ".join(f"{r.worker} {r.state}" for r in records) or "no instances reporting"
    fail(f"no ready instance of {what} ({states})")


@cli.command()
def profiles() -> None:
    """List the profiles this installation knows (built-ins and TOOLFLEET_PROFILES)."""
    try:
        known = load_profiles(Settings.from_env().profiles)
    except ToolfleetError as exc:
        fail(exc.message)
    console.print(profiles_table(known.values()))


@cli.command()
@click.argument("worker")
def restart(worker: str) -> None:
    """Restart WORKER's tool (name@host) through Celery remote control."""
    with connect() as fleet:
        answers = fleet.restart(worker)
    if not answers:
        fail(f"no reply from {worker!r} (see toolfleet status for worker names)")
    for node, answer in answers.items():
        click.echo(f"{node}: {answer}")


@cli.command()
@click.argument("prompt_ids", nargs=-1, required=True)
def cancel(prompt_ids: tuple[str, ...]) -> None:
    """Cancel prompts by id: a queued one never runs, a running one is interrupted
    (its tool restarted if it ignores the interrupt). Their results: PromptCancelled."""
    for prompt_id in prompt_ids:
        try:
            uuid.UUID(prompt_id)
        except ValueError:
            fail(
                f"{prompt_id!r} is no prompt id (submit --no-wait prints one; "
                "status --json shows a running one's)"
            )
    try:
        with connect() as fleet:
            outcome = fleet.cancel(*prompt_ids)
    except ToolfleetError as exc:
        error(exc)
    for prompt_id, what in outcome.items():
        click.echo(f"{prompt_id}: {what}")


for command in (
    up,
    worker,
    demo,
    map_command,
    changes,
    tail,
    exporter,
    flower,
    web,
    drain,
    doctor,
):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``toolfleet`` console script: every error is one clear line."""
    try:
        cli(prog_name="toolfleet")
    except ToolfleetError as exc:
        error(exc)
    except Exception as exc:
        try:
            mapped = unavailable(exc, Settings.from_env())
        except ToolfleetError:
            mapped = None
        if mapped is None:
            raise
        error(mapped)


if __name__ == "__main__":
    main()
