"""Redis restarted under load (AOF on): everyone reconnects, queued prompts survive."""

from __future__ import annotations

import time
from pathlib import Path

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis

from ..helpers import eventually
from ..integration.procs import Workers


def test_redis_restart_under_load_loses_nothing(tmp_path: Path) -> None:
    server = EmbeddedRedis(appendonly=True, directory=str(tmp_path)).start()
    settings = Settings(broker_url=server.url, heartbeat_interval=0.5)
    workers = Workers(settings, tmp_path)
    try:
        names = workers.start("echo", 2)
        workers.wait_ready(names)
        handles = [workers.fleet.submit(":sleep 0.05", "echo") for _ in range(60)]
        # some done, some running, most still queued
        eventually(lambda: sum(h.ready() for h in handles[:10]) >= 2, 30, "2 answers")
        server.stop()
        down_at = time.monotonic()
        time.sleep(2)
        server = EmbeddedRedis(server.port, appendonly=True, directory=str(tmp_path)).start()
        results = [h.get(timeout=120) for h in handles]
        recovery = time.monotonic() - down_at
        print(f"Redis down 2 s: all 60 answered {recovery:.1f} s after it stopped")
        assert [r.output for r in results] == ["slept 0.05"] * 60
        assert recovery < 90, recovery
        # no worker is stuck: each answers a prompt sent to it alone, and reports health
        for name in names:
            node = workers.node(name)
            assert workers.fleet.submit("hi", "echo", worker=node).get(timeout=30).output == "hi"
        assert all(workers.procs[n].poll() is None for n in names)
    finally:
        assert workers.close() == set()
        server.stop()
