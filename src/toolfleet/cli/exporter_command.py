"""``toolfleet exporter``: Prometheus metrics of the fleet over HTTP."""

from __future__ import annotations

import logging
import signal
import threading

import click

from toolfleet.cli.common import fail, listen_options
from toolfleet.exiting import EXIT_WITHIN, exit_within
from toolfleet.settings import Settings

__all__ = ["exporter"]

INSTALL_HINT = "pip install 'toolfleet[exporter]'"


@click.command()
@listen_options(9808, "0.0.0.0 is every interface, for a Prometheus elsewhere.")
@click.option(
    "--profile",
    "-p",
    "profiles",
    multiple=True,
    help="Also report this profile's queue while none of its workers runs (repeatable; "
    "built-in and TOOLFLEET_PROFILES profiles, and those of live workers, always are).",
)
@click.option("--loglevel", default="INFO", show_default=True, help="Log level (stderr).")
def exporter(port: int, address: str, profiles: tuple[str, ...], loglevel: str) -> None:
    """Serve Prometheus metrics of the fleet on http://ADDRESS:PORT/metrics until Ctrl-C.

    Instances (state, generation, restarts, prompts, latency, memory, usage) and queues
    (every priority, unacknowledged prompts, leases) are read from Redis at each scrape;
    prompt durations per profile come from Celery's task events. Needs the exporter
    extra: pip install 'toolfleet[exporter]'.
    """
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        fail(f"toolfleet exporter needs prometheus-client: {INSTALL_HINT}")
    from toolfleet.exporter import Exporter

    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings.from_env()
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        exit_within(EXIT_WITHIN, "the exporter")  # its event thread may wait on Redis
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with Exporter(settings, profiles) as served:
        try:
            served.serve(port, address)
        except OSError as exc:
            fail(f"cannot listen on {address}:{port}: {exc.strerror or exc}")
        click.echo(
            f"metrics of the fleet at {settings.redacted(settings.broker_url)}"
            f" on http://{address}:{port}/metrics"
        )
        while not stop.wait(1.0):
            pass
