"""What a newcomer's mistakes look like: one-line errors, refused profiles, nothing queued."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from toolfleet import RedisUnavailable, Settings
from toolfleet.cli.local import EmbeddedRedis, free_port
from toolfleet.profiles import BUILTIN_PROFILES

from .procs import Workers, env_for


def toolfleet(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toolfleet", *args],
        env=env_for(settings, **env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


COMMANDS = [
    ("submit", "1+1"),
    ("submit", "--no-wait", "1+1"),
    ("status",),
    ("status", "--json"),
    ("check",),
    ("session", "open"),
    ("session", "close", "abc"),
    ("restart", "python1@nowhere"),
    ("map", "--profile", "python", "--jsonl", "-"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_an_unreachable_redis_is_one_line_on_every_command(args: tuple[str, ...]) -> None:
    settings = Settings(broker_url=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    done = toolfleet(settings, *args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        "error: RedisUnavailable: cannot use Redis at redis://:**@127.0.0.1:"
    )
    assert "Connection refused" in lines[0] and "hunter2" not in done.stderr + done.stdout


def test_a_wrong_password_is_one_line_naming_the_credentials(tmp_path: Path) -> None:
    with EmbeddedRedis(password="right-one") as server:
        settings = Settings(broker_url=server.url.replace("right-one", "wrong-one"))
        for args in COMMANDS[:3]:
            done = toolfleet(settings, *args)
            assert done.returncode == 1
            assert done.stderr.count("\n") == 1, done.stderr
            assert "RedisUnavailable: Redis at redis://:**@" in done.stderr
            assert "refused the credentials" in done.stderr and "wrong-one" not in done.stderr


def test_prompt_handle_get_raises_redis_unavailable_when_redis_goes_away() -> None:
    from toolfleet import Fleet

    server = EmbeddedRedis().start()
    with Fleet(Settings(broker_url=server.url, heartbeat_interval=0.5)) as fleet:
        handle = fleet.submit("1+1", "python")  # no worker: it waits in the queue
        server.stop()
        with pytest.raises(RedisUnavailable, match=r"cannot use Redis at redis://127\.0\.0\.1:"):
            handle.get(timeout=30)
    del handle, fleet
    gc.collect()  # closed, the fleet leaves its handle nothing to undo (it once did)


@pytest.fixture(scope="module")
def fleet_of_bash(module_workers: Workers) -> Iterator[Workers]:
    module_workers.wait_ready(module_workers.start("bash"))
    yield module_workers


def _queued(settings: Settings, profile: str) -> int:
    with redis.Redis.from_url(settings.broker_url) as client:
        return sum(int(client.llen(key)) for key in client.keys(f"toolfleet.{profile}*"))


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "--profile", "nosuch", "x"),
        ("submit", "--profile", "nosuch", "--no-wait", "x"),
        ("session", "open", "--profile", "nosuch", "--wait", "60"),
        ("map", "--profile", "nosuch", "--template", "echo {path}", "README.md"),
    ],
    ids=" ".join,
)
def test_an_unknown_profile_is_refused_at_once_with_the_known_ones(
    fleet_of_bash: Workers, args: tuple[str, ...]
) -> None:
    done = toolfleet(fleet_of_bash.settings, *args)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: UnknownProfile: unknown profile 'nosuch'")
    assert f"known: {', '.join(sorted(BUILTIN_PROFILES))}" in done.stderr
    assert _queued(fleet_of_bash.settings, "nosuch") == 0


def test_a_profile_only_the_workers_know_is_accepted(module_workers: Workers) -> None:
    profiles = module_workers.log_dir / "workers-profiles.toml"
    profiles.write_text('[profiles.bash2]\nextends = "bash"\n', encoding="utf-8")
    module_workers.wait_ready(module_workers.start("bash2", TOOLFLEET_PROFILES=str(profiles)))
    done = toolfleet(module_workers.settings, "submit", "--profile", "bash2", "echo known")
    assert done.returncode == 0 and done.stdout == "known\n", done.stderr


def test_a_failing_shell_command_says_its_exit_status(fleet_of_bash: Workers) -> None:
    done = toolfleet(fleet_of_bash.settings, "submit", "--profile", "bash", "echo out; false")
    assert done.returncode == 1
    assert done.stdout == "out\n"
    # the module's bash worker is bash1, or bash2 after the bash2 profile's bash21
    assert re.match(r"error: ToolError: exit status 1 \(bash\d@", done.stderr), done.stderr
    as_json = toolfleet(fleet_of_bash.settings, "submit", "-p", "bash", "--json", "(exit 3)")
    assert as_json.returncode == 1
    record = json.loads(as_json.stdout)
    assert record["ok"] is False and record["exit_status"] == 3
