"""Bulk runs on a real fleet: redis-server, `toolfleet worker` processes, bash, real files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

import toolfleet.cli
from toolfleet.cli.map import map_command
from toolfleet.client.bulk import run_map
from toolfleet.client.items import MapItem, MapOutcome, expand_template
from toolfleet.client.journal import Journal
from toolfleet.client.protocols import Handle

from ..helpers import eventually
from .procs import Workers, descendants, env_for

TEMPLATE = 'sed -i "1i # DOC_ID: {stem}" {path}'
# What a rollout must use when workers may die: a prompt whose worker dies after the tool
# acted but before the result was stored is run again (at least once), so it must be
# idempotent (or the profile at most once: on_worker_lost = "fail").
IDEMPOTENT = "grep -q '^# DOC_ID:' {path} || " + TEMPLATE
N_FILES = 218


def make_files(root: Path, n: int = N_FILES) -> dict[Path, str]:
    """``n`` small modules under ``root``: {path: original text}."""
    files = {}
    for i in range(n):
        path = root / f"pkg{i % 7}" / f"mod_{i:03d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = f'"""Module {i}."""\n\n\ndef f{i}() -> int:\n    return {i}\n'
        path.write_text(text)
        files[path] = text
    return files


def header_lines(path: Path) -> int:
    return sum(line.startswith("# DOC_ID:") for line in path.read_text().splitlines())


def assert_each_file_edited_once(files: dict[Path, str], context: str = "") -> None:
    """Every file is its original text under exactly one header naming its stem."""
    wrong = {
        str(p): header_lines(p)
        for p, text in files.items()
        if p.read_text() != f"# DOC_ID: {p.stem}\n{text}"
    }
    assert not wrong, f"files not edited exactly once (path: header lines): {wrong}{context}"


def journal_keys(path: Path) -> list[str]:
    return [r["key"] for r in Journal(path).read()]


def table_value(table: str, label: str) -> str:
    """The value cell of the summary-table row whose label cell is ``label``."""
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line) if c.strip()]
        if len(cells) == 2 and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no row {label!r} in:\n{table}")


@pytest.fixture(scope="module")
def bash3(module_workers: Workers) -> Workers:
    module_workers.wait_ready(module_workers.start("bash", 3))
    return module_workers


@pytest.fixture
def fleet_env(bash3: Workers, monkeypatch: pytest.MonkeyPatch) -> Workers:
    """The module's three bash workers, with this process's TOOLFLEET_* set to reach them."""
    for name, value in env_for(bash3.settings).items():
        if name.startswith("TOOLFLEET_"):
            monkeypatch.setenv(name, value)
    return bash3


def test_218_files_over_3_bash_workers_each_edited_once(fleet_env: Workers, tmp_path: Path):
    files = make_files(tmp_path / "tree")
    journal = tmp_path / "journal.jsonl"
    args = ["--profile", "bash", "--template", TEMPLATE, "--journal", str(journal), "--json"]
    result = CliRunner().invoke(map_command, [*args, *map(str, files)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["key"] for r in records) == sorted(str(p) for p in files)
    assert all(
        r["ok"] and r["exit_status"] == 0 and r["output"] == "" and r["attempts"] == 1
        for r in records
    ), [r for r in records if not r["ok"]]
    assert len({r["prompt_id"] for r in records}) == N_FILES
    per_worker = Counter(r["worker"] for r in records)
    assert len(per_worker) == 3, per_worker  # the shared queue reached every worker
    assert_each_file_edited_once(files)
    journaled = Journal(journal).read()
    assert [r["key"] for r in journaled] == [r["key"] for r in records]  # as they completed
    assert all(r["ok"] for r in journaled)
    assert "218 items: 218 ok, 0 failed, 0 retried" in result.stderr


def test_outcomes_come_as_they_complete(bash3: Workers):
    items = [MapItem("slow", "sleep 1; echo slow")] + [
        MapItem(f"quick{i}", f"echo {i}") for i in range(20)
    ]
    started = time.monotonic()
    seen: list[tuple[str, float, MapOutcome]] = []
    # a message a prompt (a chunk's prompts come back together, when the last ends)
    for outcome in run_map(bash3.fleet, items, profile="bash", in_flight=4, chunk=1):
        seen.append((outcome.key, time.monotonic() - started, outcome))
    assert [key for key, _, _ in seen][-1] == "slow"
    when = {key: at for key, at, _ in seen}
    assert max(at for key, at in when.items() if key != "slow") < when["slow"] - 0.3
    outputs = {key: o.result.output for key, _, o in seen if o.result is not None}
    assert outputs == {"slow": "slow", **{f"quick{i}": str(i) for i in range(20)}}


def test_bad_items_fail_without_stopping_the_run(fleet_env: Workers, tmp_path: Path):
    lines: list[dict[str, str]] = [{"key": f"good{i}", "text": f"echo good {i}"} for i in range(6)]
    lines.insert(2, {"key": "oversize", "text": "echo " + "x" * (64 * 1024)})
    lines.insert(4, {"key": "status", "text": "echo about to fail; false"})
    lines.insert(5, {"key": "escape", "text": "echo \x1b[31mred"})
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    journal = tmp_path / "journal.jsonl"
    args = ["--profile", "bash", "--jsonl", str(prompts), "--journal", str(journal)]
    result = CliRunner().invoke(map_command, [*args, "--retries", "2"])
    assert result.exit_code == 1, result.output
    table = result.stdout
    assert table_value(table, "items") == "9"
    assert table_value(table, "ok") == "6"
    assert table_value(table, "failed") == "3"
    assert table_value(table, "PromptRejected") == "2"
    assert table_value(table, "ToolError") == "1"
    assert table_value(table, "retried") == "0"  # none of these is worth a retry
    records = {r["key"]: r for r in Journal(journal).read()}
    assert len(records) == 9
    assert records["oversize"]["error_type"] == "PromptRejected"
    assert "over the limit of 65536" in records["oversize"]["error"]
    assert records["escape"]["error_type"] == "PromptRejected"
    status = records["status"]
    assert (status["ok"], status["error_type"], status["exit_status"]) == (False, "ToolError", 1)
    assert status["output"] == "about to fail"
    for i in range(6):
        assert records[f"good{i}"]["ok"] and records[f"good{i}"]["output"] == f"good {i}"

    rerun = CliRunner().invoke(map_command, [*args, "--json"])
    assert rerun.exit_code == 1
    rerun_keys = sorted(json.loads(line)["key"] for line in rerun.stdout.splitlines())
    assert rerun_keys == ["escape", "oversize", "status"]  # the ok ones are not run again
    assert "6 already ok in the journal" in rerun.stderr


class Recorder:
    """Passes submissions to the fleet and remembers each prompt id's text."""

    def __init__(self, fleet: toolfleet.Fleet) -> None:
        self.fleet = fleet
        self.texts: dict[str, str] = {}

    def submit(self, text: str, profile: str = "python", *, timeout: float | None = None) -> Handle:
        handle = self.fleet.submit(text, profile, timeout=timeout)
        self.texts[handle.id] = text
        return handle


_RECEIVED = re.compile(r"toolfleet\.prompt\[([0-9a-f-]{36})\] received")
_FINISHED = re.compile(r"toolfleet\.prompt\[([0-9a-f-]{36})\] (?:succeeded|raised)")


def unfinished(log: Path) -> list[str]:
    """Prompt ids a worker's log shows received and not finished."""
    text = log.read_text(errors="replace")
    finished = set(_FINISHED.findall(text))
    return [pid for pid in _RECEIVED.findall(text) if pid not in finished]


def drop_from_broker(workers: Workers, ids: list[str]) -> None:
    """Remove the unacknowledged messages of ``ids``: nothing can deliver them again."""
    with redis.Redis.from_url(workers.settings.broker_url) as client:
        for tag, raw in client.hgetall("unacked").items():
            if json.loads(raw)[0]["headers"]["id"] in ids:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)


def _all_threads_stopped(pid: int) -> bool:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue
    return bool(states) and all(state in "tT" for state in states)


def answered(workers: Workers, ids: list[str]) -> set[str]:
    """Those of prompt ``ids`` whose result is stored."""
    key = workers.fleet.app.backend.get_key_for_task
    with redis.Redis.from_url(workers.settings.result_backend) as client:
        return {i for i in ids if client.exists(key(i))}


def kill_while_holding_a_prompt(workers: Workers, name: str, log: Path) -> list[str]:
    """SIGKILL worker ``name`` at a moment it holds a prompt; return the prompts it held.

    The worker and its tool are frozen (SIGSTOP) while its log is read: a prompt held is
    one the log shows received and not finished, and whose result is not stored (the
    worker stores a result before it logs it). If it holds nothing they are let go
    (SIGCONT) and caught again. After the kill the tool's processes are let go too, as
    after a real crash (the tool gets its parent-death signal; a command it started
    runs on). Nothing ([]) if that did not happen within 10 s.
    """
    proc = workers.procs[name]
    end = time.monotonic() + 10
    while time.monotonic() < end:
        proc.send_signal(signal.SIGSTOP)
        tree = descendants(proc.pid)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        eventually(lambda: _all_threads_stopped(proc.pid), 10, f"{name} stopped", 0.0005)
        started = unfinished(log)
        held = [pid for pid in started if pid not in answered(workers, started)]
        if held:
            proc.kill()
            proc.wait()
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if held:
            return held
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.003)
    return []


@pytest.mark.parametrize("recovery", ["retry", "redelivery"])
def test_worker_killed_mid_run_every_item_ok_and_none_done_twice(
    workers: Workers, tmp_path: Path, recovery: str
):
    """SIGKILL one of three workers while it holds a prompt.

    retry: the lost prompt's message is dropped from the broker too (as if the broker
    lost it), so it is never answered; after ``result_timeout`` map resubmits it.
    redelivery: once the dead worker's health record expires, the fleet's orphan sweep
    puts the prompt back and another worker answers it under its own id; map just gets
    the answer.
    """
    names = workers.start("bash", 3)
    workers.wait_ready(names)
    files = make_files(tmp_path / "tree")
    items = expand_template(IDEMPOTENT, [str(p) for p in files])
    key_of = {it.text: it.key for it in items}
    victim, log = names[0], tmp_path / f"{names[0]}.log"
    recorder = Recorder(workers.fleet)
    run = run_map(
        recorder,
        items,
        profile="bash",
        in_flight=6,
        retries=2,
        result_timeout=6.0 if recovery == "retry" else 60.0,
    )
    outcomes: list[MapOutcome] = []
    start_killing = threading.Event()
    killed_after: list[int] = []
    held: list[str] = []

    def killer() -> None:  # in a thread, so that the run keeps the queue full meanwhile
        start_killing.wait(60)
        held.extend(kill_while_holding_a_prompt(workers, victim, log))
        if held:  # its prompts stay unacked
            if recovery == "retry":
                drop_from_broker(workers, held)
            killed_after.append(len(outcomes))

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    for outcome in run:
        outcomes.append(outcome)
        if len(outcomes) == 40:
            start_killing.set()
    thread.join(15)
    assert killed_after and killed_after[0] < N_FILES - 50, killed_after
    lost = {key_of[recorder.texts[pid]]: pid for pid in held}
    assert lost, "the worker held no prompt when it was killed; nothing was tested"

    by_key = {o.key: o for o in outcomes}
    assert len(outcomes) == N_FILES and sorted(by_key) == sorted(key_of.values())
    assert [o for o in outcomes if not o.ok] == []
    evidence = (  # if a file was edited twice: was it the killed worker's prompt?
        f"\nkilled {victim} holding {lost}; their outcomes: "
        f"{[(k, by_key[k].worker, by_key[k].attempts, by_key[k].result) for k in lost]}"
        f"; worker logs in {tmp_path}"
    )
    assert_each_file_edited_once(files, evidence)  # none done twice
    node = workers.node(names[1]).split("@")[1]
    for key, pid in lost.items():
        outcome = by_key[key]
        assert outcome.worker != f"{victim}@{node}", outcome
        assert outcome.result is not None
        if recovery == "retry":
            assert outcome.attempts == 2 and outcome.result.prompt_id != pid, outcome
        else:
            assert outcome.attempts == 1 and outcome.result.prompt_id == pid, outcome
    assert run.retried == (len(lost) if recovery == "retry" else 0)


def test_interrupted_run_resumes_from_its_journal(fleet_env: Workers, tmp_path: Path):
    files = make_files(tmp_path / "tree")
    journal = tmp_path / "journal.jsonl"
    # the first 40 files go through; the others wait while the gate file exists, so the
    # interrupt comes in the middle of the run however fast or slow the machine is
    gate = tmp_path / "gate"
    gate.touch()
    template = (
        f"case {{stem}} in mod_0[0-3]?) ;; *) while [ -e {gate} ]; do sleep 0.01; done;; esac; "
        + TEMPLATE
    )
    argv = [sys.executable, "-m", "toolfleet", "map", "--profile", "bash", "--template"]
    argv += [template, "--journal", str(journal), "--json", "--in-flight", "6", *map(str, files)]
    env = env_for(fleet_env.settings)

    first = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def journaled_30() -> bool:
        assert first.poll() is None, first.communicate()
        return journal.exists() and len(journal.read_text().splitlines()) >= 30

    eventually(journaled_30, 60, "30 items journaled", interval=0.005)
    first.send_signal(signal.SIGINT)
    gate.unlink()  # the prompts already sent finish; the run sends no more
    out1, err1 = first.communicate(timeout=60)
    assert first.returncode == 130, err1
    reported1 = [json.loads(line)["key"] for line in out1.splitlines()]
    keys1 = journal_keys(journal)
    assert keys1 == reported1  # what it printed is what it recorded
    assert 30 <= len(keys1) < N_FILES - 50, len(keys1)
    assert all(r["ok"] for r in Journal(journal).read())
    edited = {str(p) for p in files if header_lines(p)}
    assert edited == set(keys1)  # nothing ran that the journal does not know of

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    keys2 = [json.loads(line)["key"] for line in second.stdout.splitlines()]
    assert sorted(keys2) == sorted(set(map(str, files)) - set(keys1))  # only the rest
    assert f"{len(keys1)} already ok in the journal" in second.stderr
    final = Journal(journal).read()
    assert sorted(r["key"] for r in final) == sorted(map(str, files))  # each exactly once
    assert all(r["ok"] for r in final)
    assert_each_file_edited_once(files)
