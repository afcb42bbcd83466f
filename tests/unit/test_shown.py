"""How prompts, answers and health look in Celery's events, Flower and inspect stats."""

from __future__ import annotations

import json

from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps

from toolfleet.client.fleet import task_reprs
from toolfleet.health import readable
from toolfleet.models import InstanceHealth, PromptResult
from toolfleet.workers.tasks import PromptReply, summary


def _result(output: str, ok: bool = True, status: int | None = None) -> PromptResult:
    return PromptResult(
        output=output,
        ok=ok,
        exit_status=status,
        duration_ms=1.5,
        worker="python1@h",
        profile="python",
        pid=42,
        generation=1,
    )


def test_a_reply_is_stored_as_the_whole_result_and_shown_as_one_line():
    result = _result("45\nmore lines")
    reply = PromptReply(result)
    assert json.loads(dumps(reply)) == result.model_dump(mode="json")  # the result backend
    assert saferepr(reply, 1024) == "ok: 45"  # Celery's task-succeeded event, Flower


def test_summaries_say_ok_or_the_failure_in_a_line_of_80_at_most():
    assert summary(_result("")) == "ok"
    trace = "Traceback (most recent call last):\n  File ...\nZeroDivisionError: division by zero"
    assert summary(_result(trace, ok=False)) == "error: ZeroDivisionError: division by zero"
    assert summary(_result("", ok=False, status=1)) == "exit status 1"
    long = summary(_result("x" * 500))
    assert len(long) == 80 and long.endswith("...")


def test_task_reprs_show_the_prompt_text_cut_and_the_options_apart():
    shown = task_reprs({"text": "sum(range(10))", "timeout": 5.0})
    assert shown == {"argsrepr": "'sum(range(10))'", "kwargsrepr": "{'timeout': 5.0}"}
    cut = task_reprs({"text": "y" * 500})["argsrepr"]
    assert len(cut) == 62 and cut.endswith("...'")


def test_inspect_stats_health_is_in_units_a_person_reads():
    record = InstanceHealth(
        worker="python1@h",
        profile="python",
        state="busy",
        pid=7,
        worker_pid=6,
        generation=2,
        prompts_served=10,
        last_latency_ms=8002.004020999948,
        rss_bytes=50 * 2**20 + 123,
        started_at=1_000_000.0,
        updated_at=1_003_725.0,
        busy_since=1_003_700.0,
        version="0.1.0",
    )
    shown = readable(record, now=1_003_725.5)
    assert shown["last latency"] == "8002.0 ms"
    assert shown["rss"] == "50.0 MiB"
    assert shown["uptime"] == "1h 02m 05s"
    assert shown["prompt running for"] == "25.5 s"
    assert shown["started"] == "1970-01-12T13:46:40+00:00"
    assert shown["p95 latency"] is None and shown["state"] == "busy"
