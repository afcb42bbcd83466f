"""Records vs the JSON schemas under schema/."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema

from toolfleet.models import InstanceHealth, PromptResult, json_schemas
from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool.fake import FakeInstance
from toolfleet.workers.supervisor import Supervisor

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"


def load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


def test_committed_schemas_match_the_models():
    for name, schema in json_schemas().items():
        assert load(name) == json.loads(json.dumps(schema)), (
            f"{name} is stale: run python -m toolfleet.models"
        )


def test_records_from_a_supervisor_validate():
    sup = Supervisor(FakeInstance(BUILTIN_PROFILES["echo"]), "w1@host", ["toolfleet.echo"])
    sup.start()
    try:
        result = sup.run("hello", prompt_id="abc")
        health = sup.health()
    finally:
        sup.stop()
    jsonschema.validate(result.model_dump(mode="json"), load("prompt_result.schema.json"))
    jsonschema.validate(health.model_dump(mode="json"), load("instance_health.schema.json"))
    assert PromptResult.model_validate_json(result.model_dump_json()) == result


def test_schema_rejects_a_bad_state():
    record = InstanceHealth(
        worker="w",
        profile="p",
        state="ready",
        worker_pid=1,
        generation=1,
        prompts_served=0,
        started_at=time.time(),
        updated_at=time.time(),
        version="x",
    ).model_dump(mode="json")
    record["state"] = "sleeping"
    try:
        jsonschema.validate(record, load("instance_health.schema.json"))
    except jsonschema.ValidationError:
        return
    raise AssertionError("a bad state validated")
