"""What a tool instance can see and do, on real workers and real tools: its environment
holds no secret of the fleet's (a Redis with a password) and no other profile's key; a
strict one writes only its own folders, sees no other process and reaches no network,
and still answers and takes Ctrl-C."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis
from toolfleet.errors import ToolCrashed, ToolTimeout
from toolfleet.profiles import BUILTIN_PROFILES, Profile
from toolfleet.tool import sandbox as sandbox_module
from toolfleet.tool.instance import ToolInstance

from .conftest import _fresh_settings
from .procs import Workers

PASSWORD = "confined-redis-s3cret"


def test_env_in_a_tool_shows_no_secret_of_the_fleet(tmp_path: Path) -> None:
    with EmbeddedRedis(password=PASSWORD) as server:
        settings = Settings(broker_url=server.url, heartbeat_interval=0.5)
        workers = Workers(settings, tmp_path)
        try:
            names = workers.start(
                "bash", FLOWER_BASIC_AUTH="ops:flower-pw", ANTHROPIC_API_KEY="sk-ant-key"
            )
            workers.wait_ready(names)
            shown = workers.fleet.submit("env", "bash").get(timeout=30).output
        finally:
            assert workers.close() == set()
    assert "PATH=" in shown and "TERM=dumb" in shown  # it is the tool's environment
    for secret in (PASSWORD, "TOOLFLEET_", "flower-pw", "FLOWER_", "sk-ant-key"):
        assert secret not in shown, secret


def test_a_strict_tool_writes_only_its_own_folders_and_reaches_nothing(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """Two workers of a strict bash profile on this machine."""
    checkout = tmp_path / "checkout"  # the user's files, in the workers' cwd
    checkout.mkdir()
    (checkout / "keep.txt").write_text("mine\n")
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[profiles.bash-strict]\nextends = "bash"\nsandbox = "strict"\n')
    settings = _fresh_settings(redis_server, profiles=profiles)
    workers = Workers(settings, tmp_path)
    home = Path.home()
    try:
        names = workers.start("bash-strict", 2, cwd=str(checkout))
        records = workers.wait_ready(names)
        assert {r.sandbox for r in records.values()} == {"strict"}

        def run(worker: str, text: str) -> str:
            node = workers.node(worker)
            return workers.fleet.submit(text, "bash-strict", worker=node).get(timeout=30).output

        other_home = run(names[1], "echo $HOME")
        own_home = run(names[0], "echo $HOME")
        assert own_home != other_home and own_home.startswith("/tmp/toolfleet-bash-strict-")
        attempts = {
            "user checkout": f"echo x > {checkout}/keep.txt; rm -f {checkout}/keep.txt",
            "worker home": f"touch {home}/toolfleet-confined-probe",
            "other instance": f"touch {other_home}/x; rm -rf {other_home}",
            "symlink out": f"ln -sf {checkout}/keep.txt ~/link && echo x > ~/link",
        }
        for what, text in attempts.items():
            run(names[0], text)
            assert (checkout / "keep.txt").read_text() == "mine\n", what
        assert not (home / "toolfleet-confined-probe").exists()
        assert Path(other_home).is_dir()  # the other instance's folder is still there
        assert run(names[0], "echo ok > ~/own && cat ~/own") == "ok"  # its own is writable
        # no other process is visible, the worker's environment among them
        seen = run(names[0], "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'")
        assert "TOOLFLEET_" not in seen and "PATH=" in seen
        assert int(run(names[0], "ls -d /proc/[0-9]* | wc -l")) < 10
        # no network: Redis is unreachable from the tool
        port = redis_server.port
        reach = run(names[0], f"(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>&1; echo status=$?")
        assert "status=1" in reach
        assert run(names[1], "echo still here") == "still here"
    finally:
        assert workers.close() == set()


@pytest.mark.parametrize("name", ["python", "bash", "sqlite3", "node"])
def test_each_repl_works_strict_and_ctrl_c_reaches_it(name: str, tmp_path: Path) -> None:
    if name == "node" and shutil.which("node") is None:
        pytest.skip("no node on PATH")
    if name == "sqlite3" and shutil.which("sqlite3") is None:
        pytest.skip("no sqlite3 on PATH")
    profile = BUILTIN_PROFILES[name].model_copy(update={"sandbox": "strict"})
    with running(profile, tmp_path) as tool:
        assert tool.sandbox == "strict"
        check = {"python": "6 * 7", "bash": "echo $((6 * 7))", "sqlite3": "select 6 * 7;"}
        assert tool.ask(check.get(name, "6 * 7")).output == "42"
        if name == "python":  # its memory, under the sandbox's processes, is counted
            grown = tool.ask("x = bytearray(64 << 20); len(x)")
            assert grown.ok and (tool.snapshot().rss_bytes or 0) > 64 << 20
        if name in ("python", "bash"):
            slow = {"python": "import time; time.sleep(60)", "bash": "sleep 60"}[name]
            with pytest.raises(ToolTimeout, match="interrupted"):
                tool.ask(slow, timeout=0.5)
            assert tool.ask(check[name]).output == "42" and tool.generation == 1


def test_strict_where_the_host_cannot_runs_plain_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module, "sandbox_support", lambda: (None, "no bubblewrap"))
    profile = BUILTIN_PROFILES["bash"].model_copy(update={"sandbox": "strict"})
    with running(profile, tmp_path) as tool:
        assert tool.sandbox == "none: no bubblewrap"
        assert tool.snapshot().sandbox == "none: no bubblewrap"
        assert tool.ask("echo plain").output == "plain"


@contextmanager
def running(profile: Profile, cwd: Path) -> Iterator[ToolInstance]:
    """A started instance of ``profile`` working in ``cwd``, closed afterwards."""
    tool = ToolInstance(profile, cwd=str(cwd))
    tool.start()
    try:
        yield tool
    finally:
        tool.close()


def _limited(name: str, **limits: float) -> Profile:
    return BUILTIN_PROFILES[name].model_copy(update=limits)


def test_a_fork_bomb_ends_as_tool_crashed_and_the_next_prompt_is_answered(
    tmp_path: Path,
) -> None:
    with running(_limited("bash", max_processes=40), tmp_path) as tool:
        with pytest.raises(ToolCrashed, match="process limit 40 reached"):
            tool.ask(":(){ :|:& };:", timeout=5)  # it goes on in the background:
            for _ in range(100):  # a later prompt finds it at the limit
                tool.ask("true", timeout=5)
                time.sleep(0.05)
        assert "process limit 40 reached" in (tool.last_error or "")
        tool.start()  # what the worker's supervisor does
        assert tool.ask("echo $((6 * 7))").output == "42" and tool.generation == 2
    assert not tool._limits.groups  # its cgroups are gone with it


def test_a_memory_hog_is_stopped_at_the_limit_and_the_next_prompt_is_answered(
    tmp_path: Path,
) -> None:
    with running(_limited("python", max_memory_mb=256), tmp_path) as tool:
        hog = "x = bytearray(2 << 30); len(x)"  # 2 GiB, past the 256 MiB limit
        try:
            answer = tool.ask(hog, timeout=30)
        except ToolCrashed as exc:  # a cgroup: the kernel kills it
            assert "memory limit 256 MiB reached" in exc.message
            tool.start()
        else:  # setrlimit: the allocation fails inside the tool
            assert not answer.ok and "MemoryError" in answer.output
        assert tool.ask("6 * 7").output == "42"


def test_a_busy_loop_is_held_to_its_cpu_limit(tmp_path: Path) -> None:
    """A fifth of a core: a second of spinning gets about 0.2 s of CPU, not 1 s."""
    with running(_limited("python", max_cpus=0.2), tmp_path) as tool:
        if not tool._limits.groups:
            pytest.skip("this host lets the worker make no cgroup: CPU limits need one")
        spin = (
            "import time\nt0, c0 = time.monotonic(), time.process_time()\n"
            "while time.monotonic() - t0 < 1.5: pass\n"
            "print(round(time.process_time() - c0, 2))"
        )
        used = float(tool.ask(spin, timeout=30).output)
        assert used < 0.75, used  # unlimited, it would be about 1.5 s
        assert tool.ask("6 * 7").output == "42"


def test_a_worker_survives_its_tool_s_fork_bomb(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[profiles.bash-few]\nextends = "bash"\nmax_processes = 40\n')
    settings = _fresh_settings(redis_server, profiles=profiles)
    workers = Workers(settings, tmp_path)
    try:
        (name,) = workers.start("bash-few")
        workers.wait_ready([name])
        fleet = workers.fleet
        with pytest.raises(ToolCrashed, match="process limit 40 reached"):
            fleet.submit(":(){ :|:& };:", "bash-few").get(timeout=30)
            for _ in range(100):
                fleet.submit("true", "bash-few").get(timeout=30)
                time.sleep(0.05)
        answer = fleet.submit("echo $((6 * 7))", "bash-few").get(timeout=60)
        assert answer.output == "42" and answer.generation >= 2  # a new instance answered
    finally:
        assert workers.close() == set()
