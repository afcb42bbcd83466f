"""The dashboard's parts without Redis: who may use it, what it shows of a record, how a
prompt's end is read, and how a bulk run reports its progress."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from toolfleet.cli import cli
from toolfleet.cli.web_command import web_url
from toolfleet.client.progress import RunProgress
from toolfleet.errors import ConfigError
from toolfleet.keys import RUNS, run_key
from toolfleet.models import Changes, InstanceHealth, Usage
from toolfleet.settings import Settings
from toolfleet.web.access import Access, Scrubber, access_for, is_loopback
from toolfleet.web.actions import checkout_of
from toolfleet.web.feed import StateFeed
from toolfleet.web.output import OutputBuffer, OutputHub, ending_of
from toolfleet.web.view import change_row, instance_row, natural, run_row, session_rows

from ..gitrepo import make_repo

TOKEN = "web-token-0123456789abcdef"
NOW = 1_800_000_000.0


# ---- access ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_a_configured_token_is_required_and_never_shown() -> None:
    access = access_for("0.0.0.0", TOKEN)
    assert access == Access(TOKEN) and not access.generated
    assert access.accepts(TOKEN)
    assert not access.accepts(TOKEN[:-1]) and not access.accepts("") and not access.accepts(None)
    assert TOKEN not in repr(access)
    # the cookie key comes from the token, and is not it
    assert TOKEN not in access.cookie_secret
    assert access.cookie_secret != Access(TOKEN + "x").cookie_secret


def test_no_token_off_loopback_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"toolfleet web on 0\.0\.0\.0 needs a token: set WT"):
        access_for("0.0.0.0", None, "WT")


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="TOOLFLEET_WEB_TOKEN is too short: 16 characters"):
        access_for("127.0.0.1", "short")


def test_loopback_without_a_token_makes_one_up() -> None:
    first, second = access_for("127.0.0.1", None), access_for("::1", None)
    assert first.generated and second.generated
    assert len(first.token) >= 24 and first.token != second.token


def test_the_command_refuses_a_wildcard_address_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOOLFLEET_WEB_TOKEN", raising=False)
    done = CliRunner().invoke(cli, ["web", "--address", "0.0.0.0", "--port", "1"])
    assert done.exit_code == 1
    assert "error: ConfigError: toolfleet web on 0.0.0.0 needs a token" in done.output


def test_the_printed_address() -> None:
    assert web_url("0.0.0.0", 8088) == "http://127.0.0.1:8088/"
    assert web_url("::1", 80, "/login") == "http://[::1]:80/login"
    assert web_url("10.1.2.3", 8088) == "http://10.1.2.3:8088/"


def test_the_scrubber_hides_the_token_and_redis_passwords() -> None:
    settings = Settings(
        broker_url="redis://:br0ker-pass@h:6379/0", result_backend="redis://u:b%40ck-end@h/1"
    )
    scrub = Scrubber.of(settings, Access(TOKEN))
    text = f"a {TOKEN} b br0ker-pass c b@ck-end d b%40ck-end"
    assert scrub.text(text) == "a ** b ** c ** d **"
    nested = {"k": [f"x{TOKEN}", {"y": "br0ker-pass"}], "n": 3, "none": None}
    assert scrub.data(nested) == {"k": ["x**", {"y": "**"}], "n": 3, "none": None}
    # a secret too short to hunt for everywhere is left alone (the URLs are masked anyway)
    assert Scrubber(["abc"]).text("abcabc") == "abcabc"


# ---- what the page shows of the records -------------------------------------------------


def health(**fields: Any) -> InstanceHealth:
    base: dict[str, Any] = {
        "worker": "python1@host",
        "profile": "python",
        "state": "ready",
        "pid": 10,
        "worker_pid": 9,
        "generation": 2,
        "restarts": 1,
        "prompts_served": 7,
        "started_at": NOW - 60,
        "updated_at": NOW,
        "version": "0.1.0",
    }
    return InstanceHealth(**{**base, **fields})


def test_an_instance_row_has_what_the_page_shows_and_no_heartbeat_time() -> None:
    record = health(
        state="busy",
        session="s1",
        prompt_id="p1",
        busy_since=NOW - 2,
        p50_latency_ms=3.5,
        rss_bytes=2**20,
        usage_total=Usage(sent=10, received=2, cost=0.5),
        last_error="boom",
        holding=["p1"],
    )
    row = instance_row(record)
    assert row["worker"] == "python1@host" and row["state"] == "busy"
    assert row["session"] == "s1" and row["prompt_id"] == "p1" and row["busy_since"] == NOW - 2
    assert (row["generation"], row["restarts"], row["prompts_served"]) == (2, 1, 7)
    assert row["p50_latency_ms"] == 3.5 and row["rss_bytes"] == 2**20
    assert row["usage"] == {"sent": 10, "received": 2, "cost": 0.5}
    assert row["last_error"] == "boom"
    # a heartbeat that changes nothing else changes no row (and sends no update)
    assert "updated_at" not in row
    assert instance_row(record.model_copy(update={"updated_at": NOW + 2})) == row
    json.dumps(row)


def test_workers_are_listed_in_natural_order() -> None:
    names = ["echo10@h", "echo2@h", "bash1@h", "echo1@h", "echo1@g"]
    assert sorted(names, key=natural) == ["bash1@h", "echo1@g", "echo1@h", "echo2@h", "echo10@h"]


def test_sessions_come_from_the_records_holding_them() -> None:
    records = [
        health(worker="a@h", session="s2"),
        health(worker="b@h"),
        health(worker="c@h", session="s1", state="busy", prompt_id="p", busy_since=NOW),
    ]
    rows = session_rows(records)
    assert [(r["id"], r["worker"], r["prompt_id"]) for r in rows] == [
        ("s1", "c@h", "p"),
        ("s2", "a@h", None),
    ]


def test_a_run_row_reads_the_hash_as_numbers() -> None:
    raw = {
        b"id": b"r1",
        b"profile": b"echo",
        b"total": b"10",
        b"done": b"4",
        b"failed": b"1",
        b"rate": b"2.5",
        b"started": str(NOW).encode(),
        b"state": b"running",
    }
    row = run_row(raw)
    assert row is not None
    assert (row["id"], row["total"], row["done"], row["failed"], row["retried"]) == (
        "r1",
        10,
        4,
        1,
        0,
    )
    assert row["rate"] == 2.5 and row["started"] == NOW and row["state"] == "running"
    assert run_row({}) is None  # expired between the index and the read


def test_a_change_row_leaves_the_patch_out_and_caps_the_files() -> None:
    record = Changes(
        id="c1",
        worker="w@h",
        repo="/r",
        branch="toolfleet/changes/c1",
        base="0123456789abcdef0123",
        commit="fedcba",
        files=[f"f{i}.py" for i in range(25)],
        insertions=3,
        deletions=1,
        patch="+secret diff",
        created_at=NOW,
    )
    row = change_row(record)
    assert "patch" not in row and row["base"] == "0123456789ab"
    assert len(row["files"]) == 20 and row["more_files"] == 5 and not row["empty"]
    assert change_row(record.model_copy(update={"commit": None}))["empty"]


# ---- how a prompt ended -----------------------------------------------------------------


def test_endings_from_celery_results() -> None:
    ok = {"status": "SUCCESS", "result": {"ok": True, "output": "45"}}
    assert ending_of(ok) == {"status": "ok", "message": "", "output": "45"}
    failed = {"status": "SUCCESS", "result": {"ok": False, "output": "Traceback"}}
    assert ending_of(failed)["status"] == "failed"
    cancelled = {
        "status": "FAILURE",
        "result": {"exc_type": "PromptCancelled", "exc_message": ["the tool was interrupted"]},
    }
    assert ending_of(cancelled) == {
        "status": "PromptCancelled",
        "message": "the tool was interrupted",
        "output": None,
    }
    tool_error = {
        "status": "FAILURE",
        "result": {"exc_type": "ToolError", "exc_message": ["exit status 1", {"output": "no"}]},
    }
    assert ending_of(tool_error) == {"status": "failed", "message": "exit status 1", "output": "no"}
    assert ending_of({"status": "REVOKED", "result": None})["status"] == "PromptCancelled"


def test_the_output_hub_follows_at_most_its_most() -> None:
    hub = OutputHub(None, str, Scrubber([]), most=2)
    first, second = hub.watch("p1"), hub.watch("p2")
    assert first is not None and second is not None
    assert hub.watch("p3") is None  # refused: 2 followed
    assert hub.watch("p1") is first and first.viewers == 2
    hub.leave(first)
    assert first.viewers == 1


def test_an_output_buffer_keeps_at_most_its_cap() -> None:
    buffer = OutputBuffer("p", cap=10)
    buffer.add("12345")
    buffer.add("")
    buffer.add("6789abc")
    buffer.add("more")
    assert buffer.chunks == ["12345", "6789a"] and buffer.truncated and buffer.size == 10


# ---- a run's progress -------------------------------------------------------------------


class Pipe:
    def __init__(self, log: list[tuple[Any, ...]], fail: bool) -> None:
        self.log, self.fail, self.calls = log, fail, []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def execute(self) -> list[Any]:
        if self.fail:
            raise ConnectionError("Redis is away")
        self.log.append(tuple(self.calls))
        return [None] * len(self.calls)


class Client:
    """Records each pipeline a progress write sends."""

    def __init__(self) -> None:
        self.writes: list[tuple[Any, ...]] = []
        self.fail = False

    def pipeline(self, transaction: bool = True) -> Pipe:
        assert not transaction
        return Pipe(self.writes, self.fail)


class Run:
    """What a progress write reads of a MapRun."""

    def __init__(self) -> None:
        self.total, self.retried, self.skipped = 10, 0, ["k0"]
        self.stopped, self.finished = False, None
        self.elapsed, self.outstanding = 2.0, 3


def test_progress_is_written_at_most_once_a_second_in_one_pipeline() -> None:
    client, clock = Client(), [100.0]
    progress = RunProgress(client, "echo", run_id="r1", clock=lambda: clock[0], wall=lambda: NOW)
    run = Run()
    progress.tick(run)  # the first write: at once
    for ok in (True, True, False):
        clock[0] += 0.2
        progress.settled(ok, run)
    assert len(client.writes) == 1
    clock[0] += 1.0
    progress.settled(True, run)
    assert len(client.writes) == 2
    (hset, pexpire, zadd, prune) = client.writes[-1]
    assert hset[0] == "hset" and hset[1] == (run_key("r1"),)
    fields = hset[2]["mapping"]
    assert (fields["total"], fields["done"], fields["failed"], fields["skipped"]) == (10, 3, 1, 1)
    assert fields["rate"] == 2.0 and fields["state"] == "running" and fields["outstanding"] == 3
    assert pexpire[1] == (run_key("r1"), 30_000)
    assert zadd[1] == (RUNS, {"r1": NOW + 30.0})
    assert prune[1] == (RUNS, "-inf", f"({NOW}")


def test_the_last_write_says_how_the_run_ended_and_comes_once() -> None:
    client = Client()
    progress = RunProgress(client, None, run_id="r2", wall=lambda: NOW)
    run = Run()
    run.finished, run.stopped = 5.0, True
    progress.finish(run)
    progress.finish(run)
    assert len(client.writes) == 1
    fields = client.writes[0][0][2]["mapping"]
    assert fields["state"] == "stopped" and fields["profile"] == "(per item)"


def test_a_progress_write_that_fails_does_not_stop_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # an in-process Celery worker run earlier by this test process (pytest-celery) sets
    # the root logger's level above warnings
    caplog.set_level(logging.WARNING, logger="toolfleet.client.progress")
    client = Client()
    client.fail = True
    progress = RunProgress(client, "echo", run_id="r3")
    progress.settled(False, Run())
    assert progress.writes == 0 and progress.failed == 1
    assert "run r3: progress not written: Redis is away" in caplog.text


def test_a_fleet_without_an_app_reports_nothing() -> None:
    assert RunProgress.of(object(), "echo") is None


# ---- one read for every viewer ----------------------------------------------------------


def test_the_feed_reads_every_interval_while_viewed_and_idles_otherwise() -> None:
    reads: list[float] = []

    def read() -> dict[str, Any]:
        reads.append(time.monotonic())
        return {"reads": len(reads) // 3}  # changes every third read

    async def until(predicate: Any) -> None:
        end = time.monotonic() + 10
        while not predicate():
            assert time.monotonic() < end, "not within 10 s"
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as pool:
            feed = StateFeed(read, lambda s, e: {**(s or {}), "e": e}, str, pool, 0.02, 3600)
            task = asyncio.create_task(feed.run())
            await until(lambda: len(reads) == 1)
            await asyncio.sleep(0.3)  # 15 intervals: nobody views, nothing is read
            assert len(reads) == 1 and feed.version == 1
            waiter = feed.subscribe()  # a viewer: read at once, then every interval
            await until(lambda: len(reads) >= 8)
            # a state equal to the last one is not sent again
            assert json.loads(feed.payload)["seq"] == feed.version
            assert feed.version < len(reads)
            assert waiter.is_set()
            feed.unsubscribe(waiter)
            await asyncio.sleep(0.1)
            idle = len(reads)
            await asyncio.sleep(0.3)
            assert len(reads) == idle  # idle again
            await feed.fresh()  # a request for the state: read now
            assert len(reads) == idle + 1
            feed.stop()
            await task

    asyncio.run(scenario())


# ---- where apply merges -------------------------------------------------------------


def test_apply_goes_into_the_repo_given_or_the_checkout_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"a.py": "x = 1\n"})
    (repo / "sub").mkdir()
    assert checkout_of(repo / "sub") == (repo, "")  # the checkout's top
    monkeypatch.chdir(repo / "sub")
    assert checkout_of(None) == (repo, "")
    elsewhere = tmp_path / "plain"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    top, why = checkout_of(None)
    assert top is None
    assert why == "no git checkout to apply into: start toolfleet web in one, or with --repo PATH"
    top, why = checkout_of(elsewhere)
    assert top is None
    assert why.startswith(f"--repo {elsewhere} is no git checkout (git rev-parse ")
    assert "not a git repository" in why
