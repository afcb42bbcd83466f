"""The built-in ``aider`` profile on a scripted stand-in for aider 0.86 (no LLM), in a real pty.

``tests/programs/fake_aider.py`` imitates what aider 0.86.2 run with the profile's flags
shows in a terminal; only the profile's argv[0] is replaced by it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from toolfleet.errors import ToolTimeout
from toolfleet.profiles import BUILTIN_PROFILES, Profile
from toolfleet.tool import ToolInstance

from .procs import descendants, wait_gone

FAKE_AIDER = Path(__file__).resolve().parent.parent / "programs" / "fake_aider.py"
FAST = {
    "FAKE_AIDER_START_DELAY": "0.2",
    "FAKE_AIDER_REPLY_SECONDS": "0.05",
    "FAKE_AIDER_FIRST_REPLY_EXTRA": "0",
    "AIDER_EDIT_FORMAT": "",  # whatever the developer's shell says
}
TOKENS = re.compile(r"Tokens: \S+ sent, \d+ received\.")


def fake_profile(**env: str) -> Profile:
    """The built-in aider profile, running the stand-in instead of aider."""
    base = BUILTIN_PROFILES["aider"]
    profile = base.model_copy(update={"argv": [sys.executable, str(FAKE_AIDER), *base.argv[1:]]})
    return profile.model_copy(update={"env": {**base.env, **FAST, **env}})


def lines(output: str) -> list[str]:
    """The answer's lines, without the blank lines around it."""
    return output.strip("\n").split("\n")


def first(output: str) -> str:
    return lines(output)[0]


def closed(inst: ToolInstance) -> None:
    pid = inst.pid
    inst.close()
    assert pid is None or wait_gone({pid}) == set()


@pytest.fixture
def aider(tmp_path: Path) -> Iterator[ToolInstance]:
    inst = ToolInstance(fake_profile(), cwd=str(tmp_path))
    inst.start()
    yield inst
    closed(inst)


def test_start_waits_for_the_prompt_and_a_message_returns_the_streamed_reply(
    tmp_path: Path,
) -> None:
    inst = ToolInstance(fake_profile(FAKE_AIDER_START_DELAY="0.6"), cwd=str(tmp_path))
    started = time.monotonic()
    inst.start()
    try:
        assert time.monotonic() - started >= 0.6  # waited for aider's "> ", not just the spawn
        answer = inst.ask("hello there")
        got = lines(answer.output)
        assert got[0] == "Reply #1 to: hello there (files: none)"
        assert TOKENS.fullmatch(got[1]) and len(got) == 2
        assert "\r" not in answer.output
        assert answer.output.count("hello there") == 1  # no echo of the typed text
        assert ">" not in answer.output  # no prompt
        assert (answer.ok, answer.status, answer.truncated) == (True, None, False)
        assert answer.duration_ms >= 50  # the whole stream, not its first word
        assert first(inst.ask("again").output) == "Reply #2 to: again (files: none)"
        snap = inst.snapshot()
        assert (snap.generation, snap.prompts_served, snap.state) == (1, 2, "ready")
    finally:
        closed(inst)


def test_a_slow_stream_and_a_slow_first_reply_are_collected_whole(tmp_path: Path) -> None:
    # real aider loads its LLM library on the first message: ~2 s before the first word
    inst = ToolInstance(fake_profile(FAKE_AIDER_FIRST_REPLY_EXTRA="0.8"), cwd=str(tmp_path))
    inst.start()
    try:
        answer = inst.ask("first")
        assert first(answer.output) == "Reply #1 to: first (files: none)"
        assert answer.duration_ms >= 800
        # words every ~0.2 s, each gap shorter than the profile's 300 ms settle time
        slow = inst.ask("sleep 1.4")
        assert lines(slow.output)[0] == "Reply #2 to: sleep 1.4 (files: none)"
        assert slow.duration_ms >= 1400
        quick = inst.ask("third")
        assert first(quick.output) == "Reply #3 to: third (files: none)"
        assert quick.duration_ms < 800
    finally:
        closed(inst)


def test_added_files_stay_in_the_chat(aider: ToolInstance, tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text("x = 1\n")
    assert "Added f.py to the chat" in lines(aider.ask("/add f.py").output)
    assert first(aider.ask("explain f.py").output) == "Reply #1 to: explain f.py (files: f.py)"
    assert "  f.py" in lines(aider.ask("/ls").output)
    # --yes-always: a missing file is created, as aider asks to
    assert "Added new.py to the chat" in lines(aider.ask("/add new.py").output)
    assert (tmp_path / "new.py").is_file()
    assert "Removed f.py from the chat" in lines(aider.ask("/drop f.py").output)
    assert first(aider.ask("and now?").output) == "Reply #2 to: and now? (files: new.py)"
    assert "Dropping all files from the chat session." in lines(aider.ask("/drop").output)
    assert first(aider.ask("empty?").output) == "Reply #3 to: empty? (files: none)"


def test_multiline_message_in_aiders_brace_syntax(aider: ToolInstance) -> None:
    braced = aider.ask("{\nfirst line\n\nsecond line\n}")
    assert lines(braced.output)[:3] == ["Reply #1 to: first line", "", "second line (files: none)"]
    # {TAG ... TAG}: a lone "}" inside is text
    tagged = aider.ask("{tf\nalpha\n}\nbeta\ntf}")
    assert lines(tagged.output)[:3] == ["Reply #2 to: alpha", "}", "beta (files: none)"]
    assert TOKENS.fullmatch(lines(tagged.output)[-1])
    # aider's continuation prompts are not in the answers, and the next prompt is in step
    assert ">" not in braced.output + tagged.output
    assert first(aider.ask("single").output) == "Reply #3 to: single (files: none)"


def test_plain_multiline_text_is_one_message(aider: ToolInstance) -> None:
    answer = aider.ask("first line\nsecond line")
    assert lines(answer.output)[:2] == ["Reply #1 to: first line", "second line (files: none)"]


def test_clear_keeps_files_and_the_profiles_reset_drops_everything(
    aider: ToolInstance, tmp_path: Path
) -> None:
    aider.ask("/add a.py b.py")
    assert first(aider.ask("one").output) == "Reply #1 to: one (files: a.py, b.py)"
    assert first(aider.ask("two").output) == "Reply #2 to: two (files: a.py, b.py)"
    assert "All chat history cleared." in lines(aider.ask("/clear").output)
    assert first(aider.ask("three").output) == "Reply #1 to: three (files: a.py, b.py)"
    assert aider.profile.reset == ["/reset"]
    for command in aider.profile.reset:
        reset = aider.ask(command)
    assert lines(reset.output) == ["All files dropped and chat history cleared."]
    assert first(aider.ask("four").output) == "Reply #1 to: four (files: none)"
    assert aider.generation == 1


def test_timeout_interrupts_aider_and_the_next_message_works(aider: ToolInstance) -> None:
    aider.ask("/add k.py")
    pid = aider.pid
    started = time.monotonic()
    with pytest.raises(ToolTimeout, match="interrupted"):
        aider.ask("sleep 30", timeout=1)
    assert time.monotonic() - started < 5
    assert (aider.generation, aider.pid, aider.alive()) == (1, pid, True)
    answer = aider.ask("still there?")
    # same process, same chat: the file is still in it and the interrupted message counted
    assert first(answer.output) == "Reply #2 to: still there? (files: k.py)"
    assert "^C" not in answer.output


def test_two_timeouts_in_quick_succession_keep_the_same_aider(aider: ToolInstance) -> None:
    for _ in range(2):
        with pytest.raises(ToolTimeout) as caught:
            aider.ask("sleep 30", timeout=0.5)
        assert "interrupted" in caught.value.message
    assert aider.generation == 1


@pytest.mark.parametrize("edit_format", ["diff", "whole"])
def test_edit_format_prompt(edit_format: str, tmp_path: Path) -> None:
    inst = ToolInstance(fake_profile(AIDER_EDIT_FORMAT=edit_format), cwd=str(tmp_path))
    inst.start()  # the ready pattern accepts "diff> " / "whole> "
    try:
        assert first(inst.ask("hi").output) == "Reply #1 to: hi (files: none)"
        inst.ask("/add m.py")
        answer = inst.ask("and m.py?")
        assert first(answer.output) == "Reply #2 to: and m.py? (files: m.py)"
        assert f"{edit_format}>" not in answer.output
    finally:
        closed(inst)


def test_hyphenated_edit_format_prompt(tmp_path: Path) -> None:
    profile = fake_profile(AIDER_EDIT_FORMAT="diff-fenced").model_copy(
        update={"start_timeout": 1.5}
    )
    inst = ToolInstance(profile, cwd=str(tmp_path))
    try:
        inst.start()
        assert first(inst.ask("hi").output) == "Reply #1 to: hi (files: none)"
    finally:
        closed(inst)


def test_answer_does_not_start_with_a_blank_line(aider: ToolInstance) -> None:
    assert aider.ask("hi").output.startswith("Reply #1 to: hi (files: none)\n")


def test_answer_does_not_end_with_the_chat_file_list(aider: ToolInstance) -> None:
    aider.ask("/add f.py")
    answer = aider.ask("hi")
    assert first(answer.output) == "Reply #1 to: hi (files: f.py)"
    assert TOKENS.fullmatch(lines(answer.output)[-1])


def test_close_exits_through_the_exit_command(tmp_path: Path) -> None:
    inst = ToolInstance(fake_profile(), cwd=str(tmp_path))
    inst.start()
    inst.ask("bye soon")
    proc = inst._proc
    pid = inst.pid
    assert proc is not None and pid is not None
    tree = descendants(pid) | {pid}
    started = time.monotonic()
    inst.close()
    assert time.monotonic() - started < inst.profile.grace
    # it exited by itself with status 0 (a SIGTERM/SIGKILL would show as signalstatus)
    assert (proc.exitstatus, proc.signalstatus) == (0, None)
    assert wait_gone(tree) == set()
    assert not inst.alive() and inst.pid is None
    history = (tmp_path / ".aider.chat.history.md").read_text()
    assert history.rstrip().endswith("#### /exit")


def test_instances_in_their_own_directories_keep_their_own_files(tmp_path: Path) -> None:
    dirs = [tmp_path / "one", tmp_path / "two"]
    insts = []
    for folder in dirs:
        folder.mkdir()
        insts.append(ToolInstance(fake_profile(), cwd=str(folder)))
    try:
        for inst, folder in zip(insts, dirs, strict=True):
            inst.start()
            inst.ask(f"/add {folder.name}.py")
            assert first(inst.ask(f"hello {folder.name}").output) == (
                f"Reply #1 to: hello {folder.name} (files: {folder.name}.py)"
            )
    finally:
        for inst in insts:
            closed(inst)
    for folder, other in zip(dirs, reversed(dirs), strict=True):
        assert (folder / f"{folder.name}.py").is_file()
        assert not (folder / f"{other.name}.py").exists()
        chat = (folder / ".aider.chat.history.md").read_text()
        typed = (folder / ".aider.input.history").read_text()
        assert f"#### hello {folder.name}" in chat and f"hello {other.name}" not in chat
        assert f"+hello {folder.name}" in typed and f"hello {other.name}" not in typed
