"""Flower for the fleet behind locked doors: credentials always, and only its own Host names."""

from __future__ import annotations

import atexit
import contextlib
import signal
from collections.abc import Sequence
from typing import Any

import tornado.web
from flower import command as flower_command
from flower.app import Flower
from tornado.options import options

from toolfleet.errors import ConfigError
from toolfleet.exiting import EXIT_WITHIN, exit_within
from toolfleet.web.access import allowed_hosts, host_allowed

__all__ = ["GuardedFlower", "serve_flower"]


class GuardedFlower(Flower):  # type: ignore[misc]
    """Flower's application, refusing (403) any request whose Host is not one of
    ``allowed_hosts`` (a DNS rebinding names another; empty: any)."""

    def __init__(self, *args: Any, allowed_hosts: frozenset[str], **kwargs: Any) -> None:
        self.allowed_hosts = allowed_hosts
        super().__init__(*args, **kwargs)

    def find_handler(self, request: Any, **kwargs: Any) -> Any:
        if not host_allowed(request.host, self.allowed_hosts):
            return self.get_handler_delegate(
                request, tornado.web.ErrorHandler, {"status_code": 403}
            )
        return super().find_handler(request, **kwargs)


def serve_flower(celery_app: Any, argv: Sequence[str], hosts: Sequence[str]) -> None:
    """Run Flower on ``celery_app`` with Flower's own options (``argv`` and ``FLOWER_*``
    variables) until SIGTERM, as ``celery flower`` does; ConfigError without credentials
    (basic auth or OAuth): an open Flower runs any command in the workers."""
    flower_command.apply_env_options()
    flower_command.apply_options("toolfleet flower", list(argv))
    # FLOWER_BASIC_AUTH="" is [""] to Flower: credentials that let anyone in
    if not (any(":" in c for c in options.basic_auth or []) or options.auth):
        raise ConfigError(
            "Flower needs credentials: set FLOWER_BASIC_AUTH=user:password "
            "(or --basic-auth=user:password)"
        )
    flower_command.extract_settings()
    flower_command.setup_logging()
    app = GuardedFlower(
        capp=celery_app,
        options=options,
        allowed_hosts=allowed_hosts(options.address, hosts),
        **flower_command.settings,
    )
    atexit.register(app.stop)

    def on_sigterm(signum: int, frame: Any) -> None:
        # Flower's stop joins its event thread, which waits for Redis while it is away
        exit_within(EXIT_WITHIN, "flower")
        flower_command.sigterm_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    app.start_http_server()
    with contextlib.suppress(KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM
        app.start()
