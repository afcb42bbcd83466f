"""The tool layer alone, on real programs in real ptys (no Celery)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from toolfleet.errors import IncompleteInput, PromptRejected, ToolCrashed, ToolTimeout
from toolfleet.profiles import BUILTIN_PROFILES, Profile
from toolfleet.tool import ToolInstance

from ..helpers import wait_until
from .procs import descendants, pid_alive, wait_gone


@pytest.fixture
def tool(request: pytest.FixtureRequest) -> Iterator[ToolInstance]:
    profile = (
        request.param if isinstance(request.param, Profile) else BUILTIN_PROFILES[request.param]
    )
    inst = ToolInstance(profile)
    inst.start()
    pid = inst.pid
    yield inst
    inst.close()
    assert pid is not None and wait_gone({pid}) == set()


def use(*names: str | Profile) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("tool", names, indirect=True)


@use("python")
def test_python_repl_semantics(tool: ToolInstance) -> None:
    assert tool.ask("x = 41").output == ""
    assert tool.ask("x + 1").output == "42"
    assert tool.ask("print('a'); print('b')").output == "a\nb"
    assert tool.ask("for i in range(3): print(i)").output == "0\n1\n2"
    assert tool.ask("_ * 2").output == "84"  # the REPL's _ still works
    answer = tool.ask("1/0")
    assert not answer.ok and "ZeroDivisionError" in answer.output
    assert "_tf_exec" not in answer.output  # no trace of the helper


@use("python")
def test_python_tracebacks_show_the_prompts_frames_only_as_the_repl_does(
    tool: ToolInstance,
) -> None:
    syntax = tool.ask("1 +")
    assert not syntax.ok
    assert syntax.output.splitlines() == [
        '  File "<prompt>", line 1',
        "    1 +",
        "       ^",
        "SyntaxError: invalid syntax",
    ]
    nested = tool.ask("def f():\n    return 1/0\n\nf()").output.splitlines()
    assert nested[0] == "Traceback (most recent call last):"
    assert [line for line in nested if line.startswith("  File")] == [
        '  File "<prompt>", line 4, in <module>',
        '  File "<prompt>", line 2, in f',
    ]
    # frames the prompt's own code called stay, as in the REPL
    inner = tool.ask("exec('x =')").output
    assert '  File "<string>", line 1' in inner and "codeop" not in inner
    library = tool.ask("import json; json.loads('{')").output
    assert "json/decoder.py" in library and "codeop" not in library and "ast.py" not in library


@use("python")
def test_python_incomplete_input_is_an_error_not_a_hang(tool: ToolInstance) -> None:
    for text in ("def f(", "if True:", "x = [1,\n 2,"):
        with pytest.raises(IncompleteInput):
            tool.ask(text, timeout=5)
        assert tool.ask("1+1").output == "2"
    assert tool.generation == 1


@use("python")
def test_output_that_looks_like_prompts_cannot_desynchronise(tool: ToolInstance) -> None:
    text = "print('>>> ... tf> ' * 3)\nprint('tf' + '0' * 12 + '> ')"
    assert tool.ask(text).output == ">>> ... tf> >>> ... tf> >>> ... tf> \ntf000000000000> "
    assert tool.ask("2+2").output == "4"


@use("python", "bash", "node", "echo")
def test_prompt_of_60_kib_in_one_line(tool: ToolInstance) -> None:
    payload = "a" * (60 * 1024)
    text = {
        "python": f"len('{payload}')",
        "bash": f"x={payload}; echo ${{#x}}",
        "node": f"'{payload}'.length",
        "echo": payload,
    }[tool.profile.name]
    expected = payload if tool.profile.name == "echo" else str(len(payload))
    assert tool.ask(text, timeout=30).output == expected


@use("python", "bash")
def test_timeout_interrupts_and_the_tool_keeps_its_state(tool: ToolInstance) -> None:
    setup, slow, check, expected = {
        "python": ("keep = 7", "import time; time.sleep(60)", "keep", "7"),
        "bash": ("keep=7", "sleep 60", "echo $keep", "7"),
    }[tool.profile.name]
    tool.ask(setup)
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="interrupted"):
        tool.ask(slow, timeout=0.5)
    assert time.monotonic() - started < 5
    assert tool.ask(check).output == expected
    assert tool.generation == 1


@use("echo")
def test_crash_is_reported_and_start_brings_a_new_generation(tool: ToolInstance) -> None:
    with pytest.raises(ToolCrashed, match="exit status 3"):
        tool.ask(":crash")
    assert not tool.alive()
    tool.start()
    assert tool.generation == 2
    assert tool.ask("back").output == "back"


@use("echo")
def test_output_is_capped(tool: ToolInstance) -> None:
    answer = tool.ask(f":big {5 * 1024 * 1024}", timeout=30)
    assert answer.truncated
    assert len(answer.output) == tool.profile.max_output_bytes
    assert tool.ask("next").output == "next"


@use("echo")
def test_marker_in_a_prompt_is_refused(tool: ToolInstance) -> None:
    (marker,) = tool._detector.guards()
    with pytest.raises(PromptRejected):
        tool.ask(f"say {marker} now")
    assert tool.ask("ok").output == "ok"


@use("bash")
def test_bash_exit_status_multiline_and_no_echo(tool: ToolInstance) -> None:
    answer = tool.ask("false")
    assert (answer.ok, answer.status) == (False, 1)
    assert tool.ask("cd /tmp\npwd").output == "/tmp"
    assert tool.ask("pwd").output == "/tmp"  # the shell's state persists
    with pytest.raises(IncompleteInput):
        tool.ask('echo "unclosed')
    assert tool.ask("echo ok").output == "ok"


@use("sqlite3")
def test_sqlite_multiline_and_errors(tool: ToolInstance) -> None:
    text = "create table t(a);\ninsert into t values (1), (2);\nselect sum(a)\n  from t;"
    assert tool.ask(text).output == "3"
    assert not tool.ask("select * from missing;").ok
    with pytest.raises(IncompleteInput):
        tool.ask("select 1")
    assert tool.ask("select count(*) from t;").output == "2"


@use("node")
def test_node_multiline_and_state(tool: ToolInstance) -> None:
    assert (
        tool.ask("let n = 20\nconst add = (a, b) => {\n  return a + b\n}\nadd(n, 22)").output
        == "42"
    )
    assert tool.ask("n").output == "20"
    with pytest.raises(IncompleteInput):
        tool.ask("function f(")


QUIET = Profile(
    name="quiet",
    argv=["{python}", "{toolfleet}/tool/echo_tool.py"],
    detector="quiescence",
    quiet_ms=200,
)


@use(QUIET)
def test_quiescence_detector_on_a_tool_without_a_usable_prompt(tool: ToolInstance) -> None:
    assert tool.ask("hello").output == "hello\necho> "


def test_close_kills_the_tools_own_children() -> None:
    inst = ToolInstance(BUILTIN_PROFILES["bash"])
    inst.start()
    inst.ask("sleep 300 & echo started")
    assert inst.pid is not None
    children = descendants(inst.pid)
    assert children
    inst.close()
    assert wait_gone(children | {inst.pid or 0}) == set()


def test_a_tool_that_cannot_start_is_a_clear_error() -> None:
    inst = ToolInstance(Profile(name="nope", argv=["/nonexistent/tool"], start_timeout=5))
    with pytest.raises(ToolCrashed, match="nonexistent"):
        inst.start()
    inst = ToolInstance(Profile(name="false", argv=["false"], start_timeout=5))
    with pytest.raises(ToolCrashed, match="while starting"):
        inst.start()


def test_killed_tool_is_detected() -> None:
    inst = ToolInstance(BUILTIN_PROFILES["python"])
    inst.start()
    assert inst.pid is not None and pid_alive(inst.pid)
    os.kill(inst.pid, signal.SIGKILL)
    # a confined tool outlives its sandbox's first process by a moment, and may answer
    # a prompt typed in that moment: ask once it is gone
    assert wait_until(lambda: not inst.alive(), 10)
    with pytest.raises(ToolCrashed):
        inst.ask("1")
    inst.start()
    assert inst.ask("1").output == "1" and inst.generation == 2
    inst.close()


def test_instance_dir_gives_each_instance_its_own_home() -> None:
    profile = BUILTIN_PROFILES["bash"].model_copy(update={"env": {"HOME": "{instance_dir}"}})
    a, b = ToolInstance(profile), ToolInstance(profile)
    a.start()
    b.start()
    try:
        home_a, home_b = a.ask("echo $HOME").output, b.ask("echo $HOME").output
        assert home_a != home_b and home_a == a.instance_dir
        a.restart()
        assert a.ask("echo $HOME").output == home_a  # kept across restarts
    finally:
        a.close()
        b.close()


def test_liveness_checks_from_many_threads_never_raise_when_the_tool_dies() -> None:
    """The heartbeat, the watcher and the prompt thread all ask at once; one reaps."""
    profile = Profile(name="sleeper", argv=["sleep", "300"], detector="quiescence", quiet_ms=50)
    errors: list[BaseException] = []
    for _ in range(30):
        inst = ToolInstance(profile)
        inst.start()
        pid = inst.pid
        assert pid is not None
        go = threading.Event()

        def poll(inst: ToolInstance = inst, go: threading.Event = go) -> None:
            go.wait()
            try:
                while inst.alive():
                    inst.snapshot()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=poll) for _ in range(3)]
        for thread in threads:
            thread.start()
        go.set()
        time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=10)
        assert not inst.alive() and inst.snapshot().pid is None
        inst.close()
    assert errors == []


def test_a_tool_reaped_by_someone_else_is_dead_not_an_error() -> None:
    inst = ToolInstance(BUILTIN_PROFILES["python"])
    inst.start()
    assert inst.pid is not None
    os.kill(inst.pid, signal.SIGKILL)
    os.waitpid(inst.pid, 0)
    assert not inst.alive()
    with pytest.raises(ToolCrashed):
        inst.ask("1")
    inst.close()


def test_tools_get_default_signals_even_from_a_worker_that_ignores_sigint() -> None:
    """A worker started as a background job ignores SIGINT; its tools must not."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        python, bash = (
            ToolInstance(BUILTIN_PROFILES["python"]),
            ToolInstance(BUILTIN_PROFILES["bash"]),
        )
        python.start()
        bash.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        python.ask("keep = 7")
        with pytest.raises(ToolTimeout, match="interrupted"):  # Ctrl-C reached it
            python.ask("import time; time.sleep(60)", timeout=0.5)
        assert python.ask("keep").output == "7" and python.generation == 1
        # SIGPIPE is the default too (Python ignores it): `yes` ends quietly
        assert bash.ask("yes | head -n 1").output == "y"
    finally:
        python.close()
        bash.close()
