"""The error tree survives Celery's JSON result backend as the same classes."""

from __future__ import annotations

import json

import pytest
from celery import Celery

import toolfleet
from toolfleet import errors

ALL = [getattr(errors, name) for name in errors.__all__]


def test_one_tree():
    assert all(issubclass(cls, errors.ToolfleetError) for cls in ALL)


@pytest.mark.parametrize("cls", ALL)
def test_round_trip_through_json_backend(cls):
    app = Celery(set_as_current=False, backend="cache+memory://")
    app.conf.result_serializer = "json"
    backend = app.backend
    sent = backend.prepare_exception(cls("the tool said: no"), "json")
    received = backend.exception_to_python(json.loads(json.dumps(sent)))
    assert type(received) is cls
    assert received.message == "the tool said: no"
    assert isinstance(received, toolfleet.ToolfleetError)


def test_retryable_errors():
    assert errors.ToolCrashed.retryable and errors.ToolTimeout.retryable
    assert not errors.PromptRejected.retryable
    # a prompt of an at-most-once profile whose worker died: maybe ran, never rerun
    assert issubclass(errors.WorkerLost, errors.ToolCrashed)
    assert not errors.WorkerLost.retryable


def test_tool_error_carries_the_whole_answer_through_the_json_backend():
    app = Celery(set_as_current=False, backend="cache+memory://")
    answer = {"output": "Traceback ...\nZeroDivisionError: division by zero", "ok": False}
    sent = app.backend.prepare_exception(errors.ToolError("error: ZeroDivision", answer), "json")
    received = app.backend.exception_to_python(json.loads(json.dumps(sent)))
    assert type(received) is errors.ToolError
    assert received.result == answer and received.message == "error: ZeroDivision"
    assert repr(received) == "ToolError('error: ZeroDivision')"  # what Flower shows


def test_every_error_the_cli_can_print_is_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    errors_section = readme.split("## Errors", 1)[1].split("\n## ", 1)[0]
    for name in errors.__all__:
        assert f"`{name}`" in errors_section, name
