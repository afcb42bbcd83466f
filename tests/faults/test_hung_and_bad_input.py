"""Hung tools, bad input and hostile output on real workers: typed errors, then service."""

from __future__ import annotations

import pytest

from toolfleet import IncompleteInput, PromptHandle, PromptRejected, ToolTimeout
from toolfleet.broker import PROMPT_TASK

from ..integration.procs import Workers

C0 = [chr(c) for c in range(32) if chr(c) not in "\t\n\r"] + ["\x7f"]


@pytest.fixture
def python1(workers: Workers) -> str:
    workers.wait_ready(workers.start("python"))
    return workers.node("python1")


def still_answers(workers: Workers) -> int:
    result = workers.fleet.submit("1+1", "python").get(timeout=30)
    assert result.output == "2"
    return result.generation


def test_hung_prompt_is_interrupted_at_its_deadline(workers: Workers, python1: str) -> None:
    with pytest.raises(ToolTimeout, match="interrupted"):
        workers.fleet.submit("import time; time.sleep(3600)", "python", timeout=1).get(30)
    assert still_answers(workers) == 1


def test_tool_deaf_to_interrupts_is_restarted(workers: Workers, python1: str) -> None:
    deaf = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(3600)"
    with pytest.raises(ToolTimeout, match="restarted"):
        workers.fleet.submit(deaf, "python", timeout=1).get(30)
    assert still_answers(workers) == 2


def raw(workers: Workers, text: str, node: str) -> PromptHandle:
    """Send a prompt past the producer's checks, straight to the worker."""
    from toolfleet.broker import direct_queue

    sent = workers.fleet.app.send_task(PROMPT_TASK, kwargs={"text": text}, queue=direct_queue(node))
    return PromptHandle(workers.fleet, sent, "python", node)


BAD = ["x" * (64 * 1024 + 1), "a\x00b", "\x1b[31mred", "\x1b]0;title\x07", "\u009b2J", *C0]


def test_every_control_byte_and_oversize_is_refused_at_both_ends(
    workers: Workers, python1: str
) -> None:
    for bad in BAD:
        with pytest.raises(PromptRejected):
            workers.fleet.submit(f"x = '{bad}'", "python")
        with pytest.raises(PromptRejected):
            raw(workers, f"x = '{bad}'", python1).get(timeout=30)
    assert still_answers(workers) == 1  # 36 refusals later: same instance, still right


def test_continuations_are_incomplete_input_not_hangs(workers: Workers, python1: str) -> None:
    for text in ("def f(", "if True:", "x = (1,", "'''open"):
        with pytest.raises(IncompleteInput):
            workers.fleet.submit(text, "python", timeout=5).get(timeout=30)
    assert still_answers(workers) == 1


def test_prompt_marker_lookalikes_and_invalid_utf8_output(workers: Workers, python1: str) -> None:
    fake = "print('>>> ... ' + 'tf' + 'abc123> ' + '\\ntf' + '0' * 12 + '> ')"
    assert ">>> ... tfabc123>" in workers.fleet.submit(fake, "python").get(30).output
    bad_bytes = "import sys; sys.stdout.buffer.write(b'\\xff\\xfe ok\\n'); sys.stdout.flush()"
    assert workers.fleet.submit(bad_bytes, "python").get(30).output.endswith("\ufffd\ufffd ok")
    assert still_answers(workers) == 1


def test_50_mb_of_output_is_capped_and_the_worker_stays_small(workers: Workers) -> None:
    workers.wait_ready(workers.start("echo"))
    pid = workers.procs["echo1"].pid

    def rss() -> int:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * 4096

    before = rss()
    result = workers.fleet.submit(f":big {50 * 1024 * 1024}", "echo", timeout=60).get(90)
    assert result.truncated and len(result.output) == 1024 * 1024
    assert rss() - before < 64 * 1024 * 1024, (before, rss())
    assert workers.fleet.submit("after", "echo").get(30).output == "after"
