"""Streaming on real workers: a running prompt's output arrives in chunks before its
result, in order, nothing lost or doubled; resumable; free for short prompts; live in
``submit --follow`` and ``toolfleet tail``."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

from toolfleet.keys import stream_key

from ..helpers import eventually
from .procs import Workers, env_for

TEN_LINES = "import time\nfor i in range(10):\n    print(f'line {i}')\n    time.sleep(0.2)"
EXPECTED = "\n".join(f"line {i}" for i in range(10))


@pytest.fixture(scope="module")
def fleet(module_workers: Workers) -> Workers:
    module_workers.wait_ready(module_workers.start("python"))
    return module_workers


def test_output_arrives_in_chunks_before_the_result(fleet: Workers) -> None:
    handle = fleet.fleet.submit(TEN_LINES, "python")
    chunks: list[tuple[str, bool]] = []  # (text, whether the result was stored then)
    for chunk in handle.stream(timeout=60):
        chunks.append((chunk, handle.ready()))
    result = handle.get(timeout=30)
    assert result.output == EXPECTED
    assert "".join(text for text, _ in chunks) == EXPECTED  # in order, nothing lost/doubled
    early = [text for text, stored in chunks if not stored]
    assert len(early) >= 5, chunks
    with redis.Redis.from_url(fleet.settings.result_backend) as client:
        assert client.ttl(stream_key(handle.id)) > 0  # it expires with the result


def test_a_stream_resumes_from_a_position(fleet: Workers) -> None:
    handle = fleet.fleet.submit(TEN_LINES, "python")
    first: list[str] = []
    for chunk in handle.stream(timeout=60):
        first.append(chunk)
        if len(first) == 3:
            break
    position = handle.stream_position
    assert position != "0"
    rest = list(fleet.fleet.handle(handle.id, "python").stream(position=position, timeout=60))
    handle.get(timeout=30)
    assert "".join(first + rest) == EXPECTED


def test_a_short_prompt_costs_no_stream(fleet: Workers) -> None:
    handle = fleet.fleet.submit("6 * 7", "python")
    assert list(handle.stream(timeout=30)) == ["42"]  # whole, from the result
    with redis.Redis.from_url(fleet.settings.result_backend) as client:
        assert not client.exists(stream_key(handle.id))


def test_submit_follow_prints_lines_as_they_come(fleet: Workers) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "toolfleet", "submit", "-p", "python", "--follow", "-"],
        env=env_for(fleet.settings),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(TEN_LINES)
        proc.stdin.close()
        first = proc.stdout.readline()
        running_when_first_line = proc.poll() is None
        rest = proc.stdout.read()
        assert proc.wait(30) == 0, proc.stderr.read()
    assert first == "line 0\n" and running_when_first_line  # live, not at the end
    assert first + rest == EXPECTED + "\n"


def test_tail_follows_what_a_worker_runs(fleet: Workers) -> None:
    worker = fleet.fleet.status("python")[0].worker
    with subprocess.Popen(
        [sys.executable, "-m", "toolfleet", "tail", worker],
        env=env_for(fleet.settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as tail:
        try:
            assert tail.stderr is not None and tail.stdout is not None
            assert tail.stderr.readline().startswith(f"following {worker}")
            time.sleep(1)  # it looks at the health records every 0.5 s
            handle = fleet.fleet.submit(TEN_LINES, "python", worker=worker)
            assert tail.stderr.readline().startswith(f"--- {worker}: prompt {handle.id}")
            lines = [tail.stdout.readline() for _ in range(10)]
            assert "".join(lines) == EXPECTED + "\n"
            eventually(handle.ready, 30, "the result")
        finally:
            tail.terminate()


def test_tail_of_an_unknown_worker_fails_at_once_naming_the_workers(fleet: Workers) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "toolfleet", "tail", "nosuch@host"],
        env=env_for(fleet.settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    worker = fleet.fleet.status("python")[0].worker
    assert done.returncode == 1 and "no worker 'nosuch@host'" in done.stderr
    assert worker in done.stderr
