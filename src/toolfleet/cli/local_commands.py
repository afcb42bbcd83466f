"""Commands that run fleets on this machine: ``up``, ``worker`` and the ``demo``."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from toolfleet.cli.common import console, fail
from toolfleet.cli.render import results_table, status_table
from toolfleet.client.fleet import Fleet
from toolfleet.errors import ToolfleetError
from toolfleet.settings import Settings
from toolfleet.web.access import TOKEN_ENV

__all__ = ["DEMO_PROMPTS", "demo", "parse_profiles", "up", "worker"]


def parse_profiles(specs: tuple[str, ...], workers: int) -> dict[str, int]:
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


@click.command()
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
@click.option("--web", is_flag=True, help="Also start the dashboard (toolfleet web).")
@click.option("--web-port", default=8088, show_default=True)
@click.option(
    "--ephemeral",
    is_flag=True,
    help="An embedded Redis that keeps nothing: prompts queued are lost when it stops.",
)
@click.option(
    "--fsync",
    type=click.Choice(["everysec", "always"]),
    default="everysec",
    show_default=True,
    help="When the embedded Redis writes its append-only file to disk: always loses "
    "nothing on a crash of the machine, at some speed.",
)
def up(
    specs: tuple[str, ...],
    workers: int,
    flower: bool,
    flower_port: int,
    web: bool,
    web_port: int,
    ephemeral: bool,
    fsync: str,
) -> None:
    """Start a local fleet and keep it running until Ctrl-C.

    Uses the Redis at TOOLFLEET_BROKER_URL, or starts an embedded redis-server there
    when it is a local address and nothing answers. The embedded one keeps its data in
    an append-only file in the state directory (TOOLFLEET_STATE_DIR), which the next
    `up` on that port starts from (--ephemeral: nothing kept). It has a password
    (the URL's, else a random one kept in the state directory, readable by you only,
    where your other toolfleet commands find it). Flower needs the credentials it
    prints (or FLOWER_BASIC_AUTH's); the dashboard its token.
    """
    from toolfleet.cli.local import LocalFleet

    settings = Settings.from_env()
    # the dashboard's token: TOOLFLEET_WEB_TOKEN's, else one made up for this run
    env_token = os.environ.get(TOKEN_ENV)
    web_token = env_token or secrets.token_urlsafe(24)
    # Flower's credentials: FLOWER_BASIC_AUTH's, else made up for this run
    env_auth = os.environ.get("FLOWER_BASIC_AUTH")
    flower_auth = env_auth or f"toolfleet:{secrets.token_urlsafe(18)}"
    fleet = LocalFleet(
        settings,
        parse_profiles(specs, workers),
        flower_port=flower_port if flower else None,
        web_port=web_port if web else None,
        web_token=web_token,
        flower_auth=flower_auth,
        persistent=not ephemeral,
        fsync=fsync,
    )
    # SIGTERM and SIGINT (also when started where it is ignored: a background job) set a
    # flag the loop below looks at. An exception raised from the handler could land in a
    # finalizer the garbage collector runs (a Redis pool's __del__), be ignored there,
    # and the fleet would never stop.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with fleet:
            where = "embedded redis-server" if fleet.redis else "Redis"
            settings = fleet.settings  # with the embedded Redis's password
            console.print(
                f"fleet up on {where} at {settings.redacted(settings.broker_url)};"
                f" worker logs in {fleet.log_dir}",
                soft_wrap=True,  # a path to copy whole
            )
            if fleet.redis is not None and fleet.redis.appendonly:
                console.print(
                    f"its data persists (append-only file, fsync {fsync}) in "
                    f"{fleet.redis.directory}: queued prompts survive a restart",
                    soft_wrap=True,
                )
            elif fleet.redis is not None:
                console.print(
                    "[bold]ephemeral[/]: the embedded Redis keeps nothing; prompts queued "
                    "when it stops are lost"
                )
            if flower and env_auth:
                console.print(f"Flower: http://127.0.0.1:{flower_port}/ (FLOWER_BASIC_AUTH)")
            elif flower:  # only this terminal sees the credentials made up for this run
                user, _, password = flower_auth.partition(":")
                console.print(
                    f"Flower: http://127.0.0.1:{flower_port}/ (user {user}, password {password})",
                    soft_wrap=True,
                )
            if web and env_token:
                console.print(f"Dashboard: http://127.0.0.1:{web_port}/ (TOOLFLEET_WEB_TOKEN)")
            elif web:  # only this terminal sees the token made up for this run
                link = f"http://127.0.0.1:{web_port}/login?token={web_token}"
                console.print(f"Dashboard: {link}", soft_wrap=True)
            with Fleet(settings) as producer:
                console.print(status_table(producer.status()))
            console.print("Ctrl-C stops the fleet.")
            while not stop.is_set() and all(p.poll() is None for p in fleet.procs.values()):
                stop.wait(0.5)
            if stop.is_set():
                console.print("stopping the fleet ...")
                return
            gone = sorted(name for name, p in fleet.procs.items() if p.poll() is not None)
            fail(
                f"{', '.join(gone)} exited (see {fleet.log_dir}/{gone[0]}.log); stopping the fleet"
            )
    except KeyboardInterrupt:
        console.print("stopping the fleet ...")
    except ToolfleetError as exc:
        fail(exc.message)


@click.command()
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
        fail(exc.message)
    if count == 1:
        start_worker(profile, name or f"{profile}-{os.getpid()}", loglevel)
        return
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    base, at, host = (name or profile).partition("@")
    names = [f"{base}{i}{at}{host}" for i in range(1, count + 1)]
    sys.exit(run_launcher(profile, names, loglevel, log_dir))


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


@click.command()
@click.option("--python-workers", default=2, show_default=True)
@click.option("--bash-workers", default=1, show_default=True)
def demo(python_workers: int, bash_workers: int) -> None:
    """The main job: a local fleet on an embedded Redis answers a sample batch, then stops."""
    from toolfleet.cli.local import EmbeddedRedis, LocalFleet

    started = time.monotonic()
    with EmbeddedRedis(password=secrets.token_urlsafe(24)) as server:
        settings = Settings(broker_url=server.url)
        console.print(
            f"embedded redis-server on port {server.port} (ephemeral: a throwaway run, it "
            "keeps nothing)"
        )
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
