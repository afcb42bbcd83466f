"""The ``toolfleet`` command line (click)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, cast

import click
from rich.console import Console
from rich.live import Live

from toolfleet.cli.map import map_command
from toolfleet.cli.render import profiles_table, results_table, status_plain, status_table
from toolfleet.client.fleet import Fleet
from toolfleet.client.sessions import Strategy
from toolfleet.client.unavailable import ensure_reachable, unavailable
from toolfleet.errors import ToolfleetError
from toolfleet.profiles import load_profiles
from toolfleet.settings import Settings

__all__ = ["cli", "main"]

console = Console()


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _error(exc: ToolfleetError) -> NoReturn:
    """Exit with ``exc`` as one line: ``error: ErrorType: message``."""
    _fail(f"{type(exc).__name__}: {exc.message}")


def _connect(prompt: tuple[str, str] | None = None) -> Fleet:
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


def _parse_profiles(specs: tuple[str, ...], workers: int) -> dict[str, int]:
    """``python=2 bash`` -> {"python": 2, "bash": workers}."""
    result: dict[str, int] = {}
    for spec in specs or ("python",):
        name, _, count = spec.partition("=")
        try:
            result[name] = int(count) if count else workers
        except ValueError:
            raise click.BadParameter(f"{spec!r}: expected NAME or NAME=COUNT") from None
        if result[name] < 1:
            raise click.BadParameter(f"{spec!r}: the count must be at least 1")
    return result


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="toolfleet")
def cli() -> None:
    """Run fleets of persistent interactive command-line tools behind Celery workers.

    Settings come from TOOLFLEET_* environment variables (TOOLFLEET_BROKER_URL, ...).
    """


@cli.command()
@click.option(
    "--profile",
    "-p",
    "specs",
    multiple=True,
    metavar="NAME[=N]",
    help="Profile to run, optionally with its worker count (repeatable).",
)
@click.option(
    "--workers",
    "-n",
    default=1,
    show_default=True,
    help="Workers for each --profile given without a count.",
)
@click.option("--flower", is_flag=True, help="Also start Flower.")
@click.option("--flower-port", default=5555, show_default=True)
def up(specs: tuple[str, ...], workers: int, flower: bool, flower_port: int) -> None:
    """Start a local fleet and keep it running until Ctrl-C.

    Uses the Redis at TOOLFLEET_BROKER_URL, or starts an embedded redis-server there
    when it is a local address and nothing answers.
    """
    from toolfleet.cli.local import LocalFleet

    settings = Settings.from_env()
    fleet = LocalFleet(
        settings, _parse_profiles(specs, workers), flower_port=flower_port if flower else None
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # SIGINT stops the fleet even when started where it is ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with fleet:
            where = "embedded redis-server" if fleet.redis else "Redis"
            console.print(
                f"fleet up on {where} at {settings.redacted(settings.broker_url)};"
                f" worker logs in {fleet.log_dir}"
            )
            if flower:
                console.print(f"Flower: http://127.0.0.1:{flower_port}/")
            with Fleet(settings) as producer:
                console.print(status_table(producer.status()))
            console.print("Ctrl-C stops the fleet.")
            while all(p.poll() is None for p in fleet.procs.values()):
                time.sleep(0.5)
            gone = sorted(name for name, p in fleet.procs.items() if p.poll() is not None)
            _fail(
                f"{', '.join(gone)} exited (see {fleet.log_dir}/{gone[0]}.log); stopping the fleet"
            )
    except KeyboardInterrupt:
        console.print("stopping the fleet ...")
    except ToolfleetError as exc:
        _fail(exc.message)


@cli.command()
@click.option("--profile", "-p", required=True, help="Tool profile this worker runs.")
@click.option("--name", default=None, help="Node name (default: PROFILE-PID); '@host' is added.")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option(
    "--count",
    "-n",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Workers to run, forked from this process (named NAME1..NAMEn).",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --count: one log file per worker here (default: this terminal).",
)
def worker(profile: str, name: str | None, loglevel: str, count: int, log_dir: Path | None) -> None:
    """Start Celery workers each holding one instance of PROFILE (compose runs one)."""
    from toolfleet.profiles import get_profile
    from toolfleet.workers.launcher import run_launcher, start_worker

    try:
        get_profile(profile, Settings.from_env().profiles)
    except ToolfleetError as exc:
        _fail(exc.message)
    if count == 1:
        start_worker(profile, name or f"{profile}-{os.getpid()}", loglevel)
        return
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    base, at, host = (name or profile).partition("@")
    names = [f"{base}{i}{at}{host}" for i in range(1, count + 1)]
    sys.exit(run_launcher(profile, names, loglevel, log_dir))


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
def submit(
    text: str,
    profile: str,
    worker: str | None,
    session: str | None,
    timeout: float | None,
    wait: bool,
    wait_timeout: float,
    as_json: bool,
) -> None:
    """Send one prompt (TEXT; '-' reads it from stdin)."""
    if text == "-":
        text = sys.stdin.read()
    try:
        with _connect((text, profile)) as fleet:
            if session is not None:
                handle = fleet.attach(session).send(text, timeout=timeout)
            else:
                handle = fleet.submit(text, profile, timeout=timeout, worker=worker)
            if not wait:
                click.echo(handle.id)
                return
            result = handle.get(timeout=wait_timeout)
    except ToolfleetError as exc:
        _error(exc)
    if as_json:
        click.echo(result.model_dump_json(indent=2))
    else:
        if result.output:
            click.echo(result.output)
        if not result.ok:
            why = (
                "the tool reported an error"
                if result.exit_status is None
                else f"exit status {result.exit_status}"
            )
            _fail(f"ToolError: {why} ({result.worker})")
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
        with _connect() as fleet:
            how = cast(Strategy, strategy)
            opened = fleet.session(profile, how, worker=worker, ttl=ttl, wait=wait)
    except ToolfleetError as exc:
        _error(exc)
    click.echo(opened.id)


@session.command("close")
@click.argument("session_id")
def session_close(session_id: str) -> None:
    """Close a session: its instance is reset and returns to the shared queue."""
    try:
        with _connect() as fleet:
            fleet.attach(session_id).close()
    except ToolfleetError as exc:
        _error(exc)
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
        with _connect() as fleet:
            records = fleet.status(profile)
    except ToolfleetError as exc:
        _error(exc)
    what = f"profile {profile!r}" if profile else "the fleet"
    if this_host:
        host = socket.gethostname()
        records = [r for r in records if r.worker.rpartition("@")[2] == host]
        what += f" on {host}"
    ready = [r for r in records if r.state in ("ready", "busy")]
    if ready:
        click.echo(f"ok: {len(ready)} of {len(records)} instances of {what} ready")
        return
    states = ", ".join(f"{r.worker} {r.state}" for r in records) or "no instances reporting"
    _fail(f"no ready instance of {what} ({states})")


@cli.command()
def profiles() -> None:
    """List the profiles this installation knows (built-ins and TOOLFLEET_PROFILES)."""
    try:
        known = load_profiles(Settings.from_env().profiles)
    except ToolfleetError as exc:
        _fail(exc.message)
    console.print(profiles_table(known.values()))


DEMO_PROMPTS: list[tuple[str, str]] = [
    ("python", "sum(range(10))"),
    ("python", "x = 41"),
    ("python", "import math; math.factorial(20)"),
    (
        "python",
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
        "    return a\n\n[fib(i) for i in range(12)]",
    ),
    ("python", "'toolfleet'.upper()"),
    ("python", "1/0"),
    ("bash", "echo hi"),
    ("bash", "echo $((6 * 7))"),
    ("bash", "for f in a b c; do\n  printf '%s.txt ' \"$f\"\ndone; echo"),
    ("bash", "uname -s"),
]


@cli.command()
@click.option("--python-workers", default=2, show_default=True)
@click.option("--bash-workers", default=1, show_default=True)
def demo(python_workers: int, bash_workers: int) -> None:
    """The main job: a local fleet on an embedded Redis answers a sample batch, then stops."""
    from toolfleet.cli.local import EmbeddedRedis, LocalFleet

    started = time.monotonic()
    with EmbeddedRedis() as server:
        settings = Settings(broker_url=server.url)
        console.print(f"embedded redis-server on port {server.port}")
        fleet = LocalFleet(settings, {"python": python_workers, "bash": bash_workers})
        with fleet, Fleet(settings) as producer:
            console.print(
                f"{python_workers + bash_workers} workers ready after "
                f"{time.monotonic() - started:.1f} s (logs in {fleet.log_dir})"
            )
            handles = [(text, producer.submit(text, profile)) for profile, text in DEMO_PROMPTS]
            rows: list[tuple[str, Any]] = []
            for text, handle in handles:
                try:
                    rows.append((text, handle.get(timeout=60)))
                except ToolfleetError as exc:
                    rows.append((text, exc))
            console.print(results_table(rows))
            console.print(status_table(producer.status(fresher_than=time.time())))
            stopping = time.monotonic()
        console.print(f"fleet stopped in {time.monotonic() - stopping:.1f} s")
    answered = sum(1 for _, r in rows if not isinstance(r, Exception))
    console.print(
        f"{answered}/{len(rows)} prompts answered in {time.monotonic() - started:.1f} s in all"
    )
    if answered != len(rows):
        sys.exit(1)


@cli.command()
@click.argument("worker")
def restart(worker: str) -> None:
    """Restart WORKER's tool (name@host) through Celery remote control."""
    with _connect() as fleet:
        replies = fleet.app.control.broadcast(
            "tool_restart", reply=True, destination=[worker], timeout=30
        )
    if not replies:
        _fail(f"no reply from {worker!r} (see toolfleet status for worker names)")
    for reply in replies:
        for node, answer in reply.items():
            click.echo(f"{node}: {answer}")


cli.add_command(map_command)


def main() -> None:
    """Entry point of the ``toolfleet`` console script: every error is one clear line."""
    try:
        cli(prog_name="toolfleet")
    except ToolfleetError as exc:
        _error(exc)
    except Exception as exc:
        mapped = unavailable(exc, Settings.from_env())
        if mapped is None:
            raise
        _error(mapped)


if __name__ == "__main__":
    main()
