"""The embedded Redis of ``toolfleet up`` keeps its data: a prompt queued without waiting
survives a crash of Redis (SIGKILL) and runs when the fleet is back; ``--ephemeral``
keeps nothing, as it says."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from toolfleet import Fleet, ResultTimeout, Settings
from toolfleet.cli.local import LocalFleet, free_port
from toolfleet.client.persistence import persistence


def _queue_then_crash(settings: Settings, persistent: bool, log: Path) -> str:
    """Start the embedded Redis alone, queue a prompt, SIGKILL Redis; the prompt's id."""
    empty = LocalFleet(settings, {}, log_dir=str(log), persistent=persistent)
    empty.start()
    try:
        assert empty.redis is not None
        with Fleet(empty.settings) as producer:
            words = producer.persistence()
            assert words.startswith("persistent" if persistent else "NOT persistent"), words
            handle = producer.submit("6 * 7", "python")  # no worker yet: it waits queued
        time.sleep(1.5)  # appendfsync everysec: on disk within a second
        assert empty.redis.proc is not None
        empty.redis.proc.kill()  # a crash, not a clean stop
        empty.redis.proc.wait()
        return handle.id
    finally:
        empty.stop()


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "ephemeral"])
def test_a_queued_prompt_survives_a_crash_of_the_embedded_redis(
    persistent: bool, tmp_path: Path
) -> None:
    settings = Settings(
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        heartbeat_interval=0.5,
        state_dir=tmp_path / "state",
    )
    prompt_id = _queue_then_crash(settings, persistent, tmp_path)
    with (
        LocalFleet(settings, {"python": 1}, log_dir=str(tmp_path), persistent=persistent) as fleet,
        Fleet(fleet.settings) as producer,
    ):
        handle = producer.handle(prompt_id, "python")
        if persistent:
            assert handle.get(timeout=60).output == "42"
        else:
            assert producer.persistence().startswith("NOT persistent")
            with pytest.raises(ResultTimeout):  # gone: nothing answers it
                handle.get(timeout=3)


class _Config:
    def __init__(self, values: dict[str, str] | None) -> None:
        self.values = values

    def config_get(self, name: str) -> dict[str, str]:
        import redis

        if self.values is None:
            raise redis.ResponseError("unknown command 'CONFIG'")
        return {name: self.values[name]}


def test_status_words_for_each_kind_of_redis() -> None:
    aof = {"appendonly": "yes", "appendfsync": "always", "save": ""}
    assert persistence(_Config(aof)) == "persistent (append-only file, fsync always)"
    rdb = {"appendonly": "no", "appendfsync": "everysec", "save": "3600 1"}
    assert persistence(_Config(rdb)).startswith("snapshots only (save 3600 1)")
    none = {"appendonly": "no", "appendfsync": "everysec", "save": ""}
    assert persistence(_Config(none)).startswith("NOT persistent")
    assert persistence(_Config(None)) == "persistence unknown (CONFIG is refused)"
