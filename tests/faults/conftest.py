"""Fault-suite fixtures: the integration tier's real Redis and worker processes."""

from __future__ import annotations

from tests.integration.conftest import redis_server, settings, workers

__all__ = ["redis_server", "settings", "workers"]
