"""A real fleet: redis-server, `toolfleet worker` processes, real tools in ptys."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from toolfleet import PromptHandle, PromptRejected
from toolfleet.broker import PROMPT_TASK, shared_queue

from .procs import Workers, env_for

SCHEMA = Path(__file__).resolve().parents[2] / "schema"

CASES = {
    "python": ("sum(range(10))", "45"),
    "bash": ("echo hi", "hi"),
    "sqlite3": ("select 6 * 7;", "42"),
    "node": ("[1, 2, 3].map(x => x * 2).join(',')", "'2,4,6'"),
    "echo": ("hello there", "hello there"),
}


@pytest.fixture(scope="module")
def fleet(module_workers: Workers) -> Workers:
    names = module_workers.start("python", 3)
    for profile in ("bash", "sqlite3", "node", "echo"):
        names += module_workers.start(profile)
    module_workers.wait_ready(names)
    return module_workers


@pytest.mark.parametrize("profile", sorted(CASES))
def test_each_builtin_profile_answers(fleet: Workers, profile: str) -> None:
    text, expected = CASES[profile]
    result = fleet.fleet.submit(text, profile).get(timeout=30)
    assert result.output == expected
    assert result.ok and result.profile == profile and not result.truncated


def test_bash_output_is_clean(fleet: Workers) -> None:
    # no echo of the prompt, no marker, no carriage returns
    assert fleet.fleet.submit("echo hi", profile="bash").get(timeout=10).output == "hi"


def test_200_prompts_over_3_workers_all_correct_and_distinct(fleet: Workers) -> None:
    handles = [(i, fleet.fleet.submit(f"{i} * {i} + 1", "python")) for i in range(200)]
    results = [(i, h.get(timeout=120)) for i, h in handles]
    assert [r.output for _, r in results] == [str(i * i + 1) for i, _ in results]
    assert len({r.prompt_id for _, r in results}) == 200
    per_worker = Counter(r.worker for _, r in results)
    assert len(per_worker) == 3, per_worker  # the shared queue reached every instance


def test_multiline_python_prompt(fleet: Workers) -> None:
    text = (
        "def f(n):\n    total = 0\n\n    for i in range(n):\n        total += i\n"
        "    return total\n\nf(10)"
    )
    assert fleet.fleet.submit(text, "python").get(timeout=30).output == "45"


def test_targeted_prompt_runs_on_the_named_worker(fleet: Workers) -> None:
    node = fleet.node("python1")
    results = [fleet.fleet.submit("1", "python", worker=node).get(timeout=30) for _ in range(5)]
    assert {r.worker for r in results} == {node}


@pytest.mark.parametrize("bad", ["x" * (64 * 1024 + 1), "a\x00b", "a\x03b", "\x04", "\x1b[A"])
def test_bad_input_is_refused_by_producer_and_worker(fleet: Workers, bad: str) -> None:
    with pytest.raises(PromptRejected):
        fleet.fleet.submit(bad, "python")
    # bypass the producer's check: the worker refuses it too, and keeps working
    raw = fleet.fleet.app.send_task(PROMPT_TASK, kwargs={"text": bad}, queue=shared_queue("echo"))
    with pytest.raises(PromptRejected):
        PromptHandle(fleet.fleet, raw, "echo", None).get(30)
    assert fleet.fleet.submit("still fine", "echo").get(timeout=30).output == "still fine"


def test_health_records_validate_against_the_schema(fleet: Workers) -> None:
    schema = json.loads((SCHEMA / "instance_health.schema.json").read_text())
    # written after the previous test's last prompt ended (a state change is written
    # 50 ms after it happens, so a record read at once can still say busy)
    records = fleet.fleet.status(fresher_than=time.time())
    assert len(records) == 7
    for record in records:
        jsonschema.validate(record.model_dump(mode="json"), schema)
        assert record.state == "ready" and record.pid and record.generation == 1
    result = fleet.fleet.submit("1 + 1", "python").get(timeout=30)
    jsonschema.validate(
        result.model_dump(mode="json"),
        json.loads((SCHEMA / "prompt_result.schema.json").read_text()),
    )


def test_cli_submit_and_status_as_real_processes(fleet: Workers) -> None:
    env = env_for(fleet.settings)
    toolfleet = [sys.executable, "-m", "toolfleet"]
    out = subprocess.run(
        [*toolfleet, "submit", "--profile", "python", "--wait", "sum(range(10))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout) == (0, "45\n"), out.stderr
    status = subprocess.run(
        [*toolfleet, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    workers = {r["worker"].split("@")[0] for r in json.loads(status.stdout)}
    assert {"python1", "python2", "python3"} <= workers
