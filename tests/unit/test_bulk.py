"""The bulk engine without Redis: templates, JSONL, the journal, and scheduling on a fake fleet."""

from __future__ import annotations

import json
import os
import re

import pytest
from celery.exceptions import TaskRevokedError, WorkerLostError
from click.testing import CliRunner

from toolfleet import PromptResult, ToolCrashed, ToolfleetError
from toolfleet.cli.map import map_command
from toolfleet.client.bulk import run_map
from toolfleet.client.items import MapItem, MapOutcome, expand_template, read_jsonl, text_digest
from toolfleet.client.journal import Journal
from toolfleet.errors import ConfigError, ProviderQuotaExhausted
from toolfleet.models import Usage
from toolfleet.validation import validate_prompt

# ---- templates -----------------------------------------------------------------------


def test_template_fills_every_placeholder_and_keys_items_by_path():
    items = expand_template(
        'sed -i "1i # DOC_ID: {stem}" {path} # {name} #{index}', ["src/a/x.py", "lib/y.tar.gz"]
    )
    assert items == [
        MapItem(
            "src/a/x.py",
            'sed -i "1i # DOC_ID: x" src/a/x.py # x.py #0',
            paths=("src/a/x.py",),
            index=0,
        ),
        MapItem(
            "lib/y.tar.gz",
            'sed -i "1i # DOC_ID: y.tar" lib/y.tar.gz # y.tar.gz #1',
            paths=("lib/y.tar.gz",),
            index=1,
        ),
    ]


def test_template_quotes_on_request_and_leaves_other_braces_alone():
    (item,) = expand_template(
        "cat {path!q} | awk '{print $1}'; echo ${HOME} {x}; open({name!r})", ["dir/it's a.py"]
    )
    assert item.text == (
        "cat 'dir/it'\"'\"'s a.py' | awk '{print $1}'; echo ${HOME} {x}; open(\"it's a.py\")"
    )


def test_template_without_placeholder_is_refused():
    with pytest.raises(ValueError, match="none of"):
        expand_template("make all", ["a.py"])


# ---- JSONL -----------------------------------------------------------------------------


def test_jsonl_items_with_defaults():
    lines = [
        '{"key": "a", "text": "1 + 1"}\n',
        "\n",
        '{"text": "echo hi", "profile": "bash", "timeout": 5}\n',
        '{"key": 7, "text": "x", "paths": ["a.py", "b.py"]}',
    ]
    assert read_jsonl(lines) == [
        MapItem("a", "1 + 1"),
        MapItem("3", "echo hi", "bash", 5.0, index=1),  # key: the line number
        MapItem("7", "x", index=2, paths=("a.py", "b.py")),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "not JSON"),
        ('["text"]', "expected a JSON object"),
        ('{"text": "x", "timout": 3}', "unknown field.*timout"),
        ('{"key": "k"}', "'text' must be a string"),
        ('{"text": "x", "paths": "a.py"}', "'paths' must be a list"),
        ('{"text": "x", "timeout": -1}', "'timeout' must be a positive"),
        ('{"text": "x", "timeout": true}', "'timeout' must be a positive"),
        ('{"text": "x", "key": [1]}', "'key' must be"),
        ('{"text": "x", "profile": 3}', "'profile' must be"),
    ],
)
def test_jsonl_bad_lines_name_the_line(line, message):
    with pytest.raises(ValueError, match=rf"^p\.jsonl:2: .*{message}"):
        read_jsonl(['{"text": "fine"}', line], source="p.jsonl")


# ---- the journal -------------------------------------------------------------------------


def _result(output: str = "", ok: bool = True, status: int | None = 0) -> PromptResult:
    return PromptResult(
        output=output,
        ok=ok,
        exit_status=status,
        duration_ms=1.0,
        worker="w1@h",
        profile="bash",
        pid=1,
        generation=1,
        prompt_id="p1",
    )


def test_journal_round_trip_and_done_keys_are_the_ok_ones(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.write(MapOutcome("a", True, _result("out"), worker="w1@h"), sha="s1")
        journal.write(MapOutcome("b", False, None, "ToolCrashed", "died", attempts=2))
        journal.write(MapOutcome("c", False, _result("no", False, 1), "ToolError", "exit 1"))
    records = Journal(path).read()
    assert [(r["key"], r["ok"]) for r in records] == [("a", True), ("b", False), ("c", False)]
    assert records[0]["output"] == "out" and records[0]["sha"] == "s1"
    assert records[1]["error_type"] == "ToolCrashed" and records[1]["attempts"] == 2
    assert records[2]["exit_status"] == 1
    assert Journal(path).done_keys() == {"a"}


def test_journal_fsyncs_each_line_and_another_reader_sees_it_at_once(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "j.jsonl"
    journal = Journal(path).open()
    for n in range(3):
        journal.write(MapOutcome(f"k{n}", True, _result()))
        assert len(synced) == n + 1
        assert Journal(path).done_keys() == {f"k{i}" for i in range(n + 1)}
    journal.close()


def test_journal_tolerates_a_torn_last_line_and_appends_after_it(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"key": "a", "ok": true}\n{"key": "b", "o')
    journal = Journal(path)
    assert journal.done_keys() == {"a"}
    assert journal.skipped_lines == 1
    with journal:
        journal.write(MapOutcome("c", True, _result()))
    assert Journal(path).done_keys() == {"a", "c"}


def test_journal_refuses_a_file_that_is_not_one_and_leaves_it_alone(tmp_path):
    path = tmp_path / "main.py"
    path.write_text("print('hello')\n")
    with pytest.raises(ConfigError, match="not a toolfleet journal"):
        Journal(path).open()
    assert path.read_text() == "print('hello')\n"


def test_two_runs_cannot_share_a_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    with Journal(path), pytest.raises(ConfigError, match="in use"):
        Journal(path).open()
    Journal(path).open().close()  # free again once the first is closed


# ---- scheduling, on a fake fleet ---------------------------------------------------------


class FakeHandle:
    """A prompt on a fake fleet whose outcome is decided by its text."""

    def __init__(self, fleet: FakeFleet, pid: str, text: str, attempt: int) -> None:
        self.fleet, self.id, self.text, self.attempt = fleet, pid, text, attempt
        self.polls = 0  # ready() calls while running: it answers on the second
        self.revoked = self.dropped = self.collected = False
        self.async_result = self  # what run_map revokes through

    def revoke(self) -> None:
        self.revoked = True
        self.fleet.revoked.append(self.text)
        if not self.fleet.running(self):  # a worker drops a revoked prompt it has not begun
            self.dropped = True
            self.fleet.queue.remove(self)

    def ready(self) -> bool:
        fleet = self.fleet
        fleet.polls += 1
        if fleet.polls == fleet.interrupt_at_poll:
            raise KeyboardInterrupt
        if self.dropped:
            return True
        if not fleet.running(self):
            return False  # queued behind busy workers
        self.polls += 1
        if self.text.startswith("lost:") and self.attempt == 1:
            return False  # its worker died: it never answers
        return self.polls >= 2

    def get(self, timeout: float | None = 60.0) -> PromptResult:
        assert not self.collected, "collected twice"
        self.collected = True
        if self in self.fleet.queue:
            self.fleet.queue.remove(self)
        if self.dropped:
            try:
                raise TaskRevokedError("revoked")
            except TaskRevokedError as exc:
                raise ToolfleetError(f"TaskRevokedError: {exc}") from exc
        kind, _, arg = self.text.partition(":")
        if kind == "crash" or (kind == "crash-once" and self.attempt == 1):
            raise ToolCrashed("the tool died")
        if kind == "lost-worker" and self.attempt == 1:
            try:
                raise WorkerLostError("worker exited")
            except WorkerLostError as exc:
                raise ToolfleetError(f"WorkerLostError: {exc}") from exc
        if kind == "fail":
            return _result(f"failed {arg}", ok=False, status=int(arg))
        if kind == "quota":
            raise ProviderQuotaExhausted(arg)
        if kind == "cost":
            spent = Usage(sent=100, received=10, cost=float(arg.split()[0]))
            return _result(f"did {self.text}").model_copy(update={"usage": spent})
        return _result(f"did {self.text}")


class FakeFleet:
    """``workers`` workers take the oldest outstanding prompts (a FIFO shared queue)."""

    def __init__(self, workers: int = 100) -> None:
        self.workers = workers
        self.submitted: list[str] = []
        self.queue: list[FakeHandle] = []  # submitted, not collected
        self.max_outstanding = 0
        self.revoked: list[str] = []
        self.handles: list[FakeHandle] = []
        self.polls = 0
        self.interrupt_at_poll = -1
        #: the budget each prompt was sent with (what is left of a run's)
        self.budgets: list[float | None] = []

    def running(self, handle: FakeHandle) -> bool:
        return handle in self.queue[: self.workers]

    def submit(
        self,
        text: str,
        profile: str = "python",
        *,
        timeout: float | None = None,
        budget: float | None = None,
    ):
        validate_prompt(text, max_bytes=100)
        self.budgets.append(budget)
        attempt = self.submitted.count(text) + 1
        self.submitted.append(text)
        handle = FakeHandle(self, f"id{len(self.submitted)}", text, attempt)
        self.handles.append(handle)
        self.queue.append(handle)
        self.max_outstanding = max(self.max_outstanding, len(self.queue))
        return handle


def _run(items, **kw):
    fleet = FakeFleet()
    kw.setdefault("profile", "bash")
    run = run_map(fleet, items, poll=0.001, **kw)
    return fleet, run, {o.key: o for o in run}


def test_every_item_once_and_never_more_than_in_flight_outstanding():
    items = [MapItem(f"k{i}", f"ok:{i}") for i in range(50)]
    fleet, run, outcomes = _run(items, in_flight=4)
    assert sorted(outcomes) == sorted(it.key for it in items)
    assert all(o.ok and o.attempts == 1 for o in outcomes.values())
    assert outcomes["k7"].result is not None and outcomes["k7"].result.output == "did ok:7"
    assert sorted(fleet.submitted) == sorted(it.text for it in items)
    assert fleet.max_outstanding == 4
    assert run.retried == 0 and run.total == 50


def test_plain_strings_are_keyed_by_index():
    _, _, outcomes = _run(["ok:a", "ok:b"])
    assert {k: o.result.output for k, o in outcomes.items() if o.result} == {
        "0": "did ok:a",
        "1": "did ok:b",
    }


def test_retryable_errors_are_retried_up_to_the_limit():
    items = [
        MapItem("once", "crash-once:x"),
        MapItem("always", "crash:y"),
        MapItem("lost", "lost-worker:z"),
    ]
    fleet, run, outcomes = _run(items, retries=2)
    assert outcomes["once"].ok and outcomes["once"].attempts == 2
    assert outcomes["lost"].ok and outcomes["lost"].attempts == 2
    always = outcomes["always"]
    assert not always.ok and always.attempts == 3 and always.error_type == "ToolCrashed"
    assert fleet.submitted.count("crash:y") == 3
    assert run.retried == 1 + 1 + 2


def test_without_retries_a_lost_worker_is_reported_by_name():
    _, run, outcomes = _run([MapItem("lost", "lost-worker:z")])
    assert outcomes["lost"].error_type == "WorkerLostError" and outcomes["lost"].attempts == 1
    assert run.retried == 0


def test_tool_errors_and_rejected_prompts_fail_without_retry_or_stopping_the_run():
    items = [
        MapItem("bad-status", "fail:3"),
        MapItem("too-big", "x" * 200),
        MapItem("ctrl", "a\x03b"),
        *[MapItem(f"k{i}", f"ok:{i}") for i in range(5)],
    ]
    fleet, run, outcomes = _run(items, retries=3)
    status = outcomes["bad-status"]
    assert not status.ok and status.error_type == "ToolError" and status.error == "exit status 3"
    assert status.result is not None and status.result.output == "failed 3"
    for key in ("too-big", "ctrl"):
        assert outcomes[key].error_type == "PromptRejected" and outcomes[key].attempts == 1
    assert all(outcomes[f"k{i}"].ok for i in range(5))
    assert fleet.submitted.count("fail:3") == 1
    assert run.retried == 0


def test_a_result_that_never_comes_is_a_retryable_result_timeout_and_is_revoked():
    fleet, _, outcomes = _run([MapItem("l", "lost:1")], retries=1, result_timeout=0.05)
    assert outcomes["l"].ok and outcomes["l"].attempts == 2
    assert fleet.revoked == ["lost:1"]  # the lost submission, so it cannot run late too
    _, _, outcomes = _run([MapItem("l", "lost:1")], result_timeout=0.05)
    assert outcomes["l"].error_type == "ResultTimeout"
    assert "no result for prompt id1 within" in (outcomes["l"].error or "")


def test_rerun_with_the_journal_runs_only_what_is_not_ok(tmp_path):
    journal = tmp_path / "j.jsonl"
    items = [MapItem(f"k{i}", f"ok:{i}") for i in range(6)] + [MapItem("bad", "crash:b")]
    _, _, out1 = _run(items, journal=journal)
    assert len(out1) == 7 and not out1["bad"].ok
    records = Journal(journal).read()
    assert sorted(r["key"] for r in records) == sorted(out1)
    assert all(r["sha"] == text_digest(it.text) for r, it in zip(records, items, strict=False))
    second, run2, out2 = _run(items, journal=journal)
    assert second.submitted == ["crash:b"]
    assert sorted(run2.skipped) == [f"k{i}" for i in range(6)]
    assert list(out2) == ["bad"]
    assert run2.changed == []
    changed = [MapItem("k0", "ok:CHANGED"), *items[1:]]
    _, run3, _ = _run(changed, journal=journal)
    assert run3.changed == ["k0"]  # noticed, still skipped by key


def test_stop_submits_nothing_more_and_records_every_prompt_already_sent(tmp_path):
    journal = tmp_path / "j.jsonl"
    items = [MapItem(f"k{i}", f"ok:{i}") for i in range(30)]
    fleet = FakeFleet(workers=2)
    run = run_map(fleet, items, profile="bash", in_flight=6, journal=journal, poll=0.001)
    taken = [next(run)]
    run.stop()
    submitted = len(fleet.submitted)
    assert fleet.queue  # prompts were queued and running when it stopped
    taken += list(run)
    assert len(fleet.submitted) == submitted  # nothing new after stop()
    assert fleet.revoked == []  # a revoke could hide a prompt that then runs anyway
    assert run.stopped and run.finished is not None and run.outstanding == 0
    assert sorted(o.result.output for o in taken if o.result) == sorted(
        f"did {t}" for t in fleet.submitted
    )
    keys = {o.key for o in taken}
    assert not keys & set(run.cancelled)
    assert keys | set(run.cancelled) == {it.key for it in items}
    assert Journal(journal).done_keys() == keys  # every outcome of the run, nothing else


def test_ctrl_c_inside_the_iteration_propagates_then_iterating_on_drains(tmp_path):
    journal = tmp_path / "j.jsonl"
    fleet = FakeFleet(workers=2)
    fleet.interrupt_at_poll = 9
    items = [MapItem(f"k{i}", f"ok:{i}") for i in range(30)]
    run = run_map(fleet, items, profile="bash", in_flight=6, journal=journal, poll=0.001)
    taken = []
    with pytest.raises(KeyboardInterrupt):
        taken.extend(run)
    assert run.stop_requested and len(fleet.submitted) < 30
    submitted = len(fleet.submitted)
    taken += list(run)
    assert len(fleet.submitted) == submitted
    assert {o.key for o in taken} | set(run.cancelled) == {it.key for it in items}
    assert Journal(journal).done_keys() == {o.key for o in taken}


def test_close_without_waiting_records_the_finished_and_abandons_the_rest(tmp_path):
    journal = tmp_path / "j.jsonl"
    fleet = FakeFleet(workers=2)
    items = [MapItem("lost", "lost:0"), *[MapItem(f"k{i}", f"ok:{i}") for i in range(9)]]
    run = run_map(fleet, items, profile="bash", in_flight=4, journal=journal, poll=0.001)
    first = next(run)
    rest = run.close(wait=False)
    assert "lost" in run.abandoned  # it may still run somewhere: reported, not recorded
    assert sorted(fleet.revoked) == sorted(
        it.text for it in items if it.key in run.abandoned
    )  # revoked so that, if still queued, it does not run
    keys = {first.key} | {o.key for o in rest}
    assert all(o.ok for o in rest)
    assert keys | set(run.cancelled) | set(run.abandoned) == {it.key for it in items}
    assert len(keys) + len(run.cancelled) + len(run.abandoned) == len(items)
    assert Journal(journal).done_keys() == keys


def test_items_are_checked_before_anything_runs(tmp_path):
    fleet = FakeFleet()
    with pytest.raises(ValueError, match="duplicate item key 'a'"):
        run_map(fleet, [MapItem("a", "x"), MapItem("a", "y")], profile="bash")
    with pytest.raises(ValueError, match="no profile"):
        run_map(fleet, [MapItem("a", "x")])
    with pytest.raises(ValueError, match="in_flight"):
        run_map(fleet, ["x"], profile="bash", in_flight=0)
    assert fleet.submitted == []


def test_outcome_record_is_json():
    record = MapOutcome("k", True, _result("hi"), worker="w1@h", duration_ms=2.5).to_record()
    assert json.loads(json.dumps(record)) == {
        "key": "k",
        "ok": True,
        "output": "hi",
        "exit_status": 0,
        "truncated": False,
        "worker": "w1@h",
        "duration_ms": 2.5,
        "tool_ms": 1.0,
        "attempts": 1,
        "prompt_id": "p1",
    }


# ---- the command's input checks (they fail before anything connects) ----------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give one of --template or --step with FILES, or --jsonl"),
        (["--template", "echo {path}"], "--template needs FILES"),
        (["--template", "make", "a.py"], "none of {path} {name} {stem} {index}"),
        (["--template", "x {path}", "--jsonl", "-", "a.py"], "give one of"),
        (["--template", "x {path}", "--step", "y {path}", "a.py"], "give one of"),
        (["--step", "/add {path}", "--step", "go"], "--step needs FILES"),
        (["--step", "go", "--step", "stop", "a.py"], "no step uses any of {path}"),
        (["--jsonl", "-"], "<stdin>:2: 'text' must be a string"),
        (["--jsonl", "-", "--in-flight", "0"], "0 is not in the range x>=1"),
    ],
)
def test_map_command_refuses_bad_input_before_connecting(monkeypatch, args, message):
    monkeypatch.setenv("TOOLFLEET_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing there
    stdin = '{"text": "echo ok"}\n{"key": "no text"}\n'
    result = CliRunner().invoke(map_command, ["--profile", "bash", *args], input=stdin)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_map_command_needs_a_profile_unless_every_line_has_one(monkeypatch):
    monkeypatch.setenv("TOOLFLEET_BROKER_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(map_command, ["--jsonl", "-"], input='{"text": "1"}\n')
    assert result.exit_code == 2 and "--profile is needed" in result.output


def test_map_command_explains_itself():
    result = CliRunner().invoke(map_command, ["--help"])
    assert result.exit_code == 0
    for option in ("--template", "--jsonl", "--in-flight", "--retries", "--journal", "--json"):
        assert option in result.output
    assert "{stem}" in result.output and "Exit status" in result.output


def test_the_progress_bar_labels_the_eta_and_the_elapsed_time():
    import io

    from rich.console import Console
    from rich.text import Text

    from toolfleet.cli.map_report import progress_bar

    out = io.StringIO()
    err = Console(file=out, width=120, force_terminal=False)
    bar = progress_bar(lambda _: Text("map"), err)
    task = bar.add_task("map", total=10, failed=1, rate="3.0/s")
    bar.update(task, advance=4)
    err.print(bar.get_renderable())
    shown = out.getvalue()
    assert "4/10" in shown and "1 failed" in shown and "3.0/s" in shown
    assert re.search(r"ETA \S+ elapsed \d+:\d\d:\d\d", shown), shown


def test_a_budget_stops_sending_once_the_reported_cost_reaches_it():
    items = [MapItem(f"k{i}", f"cost:0.25 {i}") for i in range(10)]
    fleet, run, outcomes = _run(items, in_flight=1, budget=1.0)
    assert run.budget_reached and len(outcomes) == 4  # 4 x 0.25 reaches 1.0
    assert run.usage == Usage(sent=400, received=40, cost=1.0)
    assert len(run.cancelled) == 6 and len(fleet.submitted) == 4
    assert all(o.ok for o in outcomes.values())
    # each prompt carries what is left of the run's budget, for a model gateway to keep
    assert fleet.budgets == [1.0, 0.75, 0.5, 0.25]


def test_an_item_budget_is_carried_within_what_is_left_of_the_runs():
    items = [MapItem(f"k{i}", f"cost:0.25 {i}") for i in range(3)]
    fleet, _, _ = _run(items, in_flight=1, budget=0.6, item_budget=0.3)
    assert fleet.budgets == [0.3, 0.3, pytest.approx(0.1)]
    fleet, _, _ = _run(items[:2], in_flight=1, item_budget=0.2)
    assert fleet.budgets == [0.2, 0.2]


def test_quota_exhausted_stops_the_run_leaving_items_not_run_and_unrecorded(tmp_path):
    journal = tmp_path / "j.jsonl"
    items = [MapItem(f"k{i}", f"ok:{i}") for i in range(3)] + [MapItem("q", "quota:gone")]
    items += [MapItem(f"z{i}", f"ok:{i}") for i in range(3)]
    _, run, outcomes = _run(items, in_flight=1, journal=journal)
    assert run.quota_exhausted == "gone" and run.stop_reason == "quota exhausted"
    assert sorted(outcomes) == ["k0", "k1", "k2"]  # none failed
    assert run.cancelled == ["q", "z0", "z1", "z2"]
    assert [json.loads(line)["key"] for line in journal.read_text().splitlines()] == [
        "k0",
        "k1",
        "k2",
    ]


def test_without_a_budget_usage_is_summed_and_nothing_stops():
    items = [MapItem(f"k{i}", f"cost:0.5 {i}") for i in range(4)] + [MapItem("free", "ok:x")]
    _, run, outcomes = _run(items, in_flight=2)
    assert not run.budget_reached and len(outcomes) == 5
    assert run.usage is not None and run.usage.cost == 2.0 and run.usage.sent == 400
    assert outcomes["k0"].to_record()["usage"] == {"sent": 100, "received": 10, "cost": 0.5}
    assert "usage" not in outcomes["free"].to_record()


class ChunkingFleet(FakeFleet):
    """A FakeFleet that also takes chunks; records each message's prompts and profile."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[str, list[str]]] = []

    def submit(self, text: str, profile: str = "python", *, timeout: float | None = None):
        self.messages.append((profile, [text]))
        return super().submit(text, profile, timeout=timeout)

    def submit_many(self, texts, profile: str = "python", *, timeout: float | None = None):
        self.messages.append((profile, list(texts)))
        handles = [FakeFleet.submit(self, text, profile, timeout=timeout) for text in texts]
        chunk = FakeChunk(f"chunk{len(self.messages)}", handles)
        for handle in handles:
            handle.chunk = chunk
        return handles


class FakeChunk:
    """The message of a chunk's FakeHandles: ready when all of them are."""

    def __init__(self, id: str, handles) -> None:
        self.id = id
        self.handles = handles

    def ready(self) -> bool:
        return all(h.ready() for h in self.handles)


def test_chunks_group_plain_prompts_of_one_profile_and_in_flight_counts_messages():
    from toolfleet.client.chunks import chunk_error

    items = [MapItem(f"a{i}", f"ok:a{i}") for i in range(10)]
    items += [MapItem("b0", "ok:b0", profile="python"), MapItem("a10", "ok:a10")]
    fleet = ChunkingFleet()
    run = run_map(fleet, items, profile="bash", chunk=4, in_flight=2, poll=0.001)
    outcomes = {o.key: o for o in run}
    assert all(o.ok for o in outcomes.values()) and len(outcomes) == 12
    assert [(p, len(texts)) for p, texts in fleet.messages] == [
        ("bash", 4),
        ("bash", 4),
        ("bash", 2),  # the python item ends the run of bash prompts
        ("python", 1),
        ("bash", 1),
    ]
    # 2 messages in flight: up to 8 prompts outstanding, never more
    assert fleet.max_outstanding == 8
    # a chunk's failed prompt comes back as its own typed error
    assert type(chunk_error({"error": "ToolCrashed", "message": "m"})).__name__ == "ToolCrashed"
    odd = chunk_error({"error": "NoSuchError", "message": "m", "retryable": True})
    assert type(odd).__name__ == "ToolfleetError" and odd.retryable
