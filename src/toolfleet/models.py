"""JSON-safe records that cross Redis: prompt results and instance health."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "STATES",
    "Changes",
    "CheckResult",
    "InstanceHealth",
    "PromptResult",
    "State",
    "Usage",
    "json_schemas",
    "write_schemas",
]

State = Literal["starting", "ready", "busy", "restarting", "failed", "stopping"]
STATES: tuple[State, ...] = ("starting", "ready", "busy", "restarting", "failed", "stopping")


class Usage(BaseModel):
    """Tokens and money a tool reported spending (its profile's ``usage_pattern``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sent: int = Field(0, ge=0, description="Tokens sent to the model.")
    received: int = Field(0, ge=0, description="Tokens received from the model.")
    cost: float = Field(0.0, ge=0, description="Money spent (the tool's currency, e.g. USD).")

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            sent=self.sent + other.sent,
            received=self.received + other.received,
            cost=round(self.cost + other.cost, 10),
        )

    @staticmethod
    def total(usages: Iterable[Usage | None]) -> Usage | None:
        """The sum of ``usages`` (None when none of them is known)."""
        known = [u for u in usages if u is not None]
        return sum(known[1:], known[0]) if known else None


class PromptResult(BaseModel):
    """What a tool answered to one prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output: str = Field(description="What the tool printed, without echo, markers or CRs.")
    ok: bool = Field(description="False when the tool reported an error (e.g. exit status).")
    exit_status: int | None = Field(None, description="Status the tool reported, if any.")
    duration_ms: float = Field(ge=0, description="Time inside the tool.")
    worker: str = Field(description="Celery node name of the worker.")
    profile: str
    pid: int = Field(description="Process id of the tool instance.")
    generation: int = Field(ge=1, description="Instance generation (1 + restarts).")
    session: str | None = None
    seq: int | None = Field(None, description="Sequence number inside the session.")
    truncated: bool = Field(False, description="Output was cut at the profile's cap.")
    prompt_id: str | None = Field(None, description="The Celery task id of the prompt.")
    usage: Usage | None = Field(None, description="What the tool reported spending on it.")
    tool_calls: list[dict[str, Any]] = Field(
        default_factory=list,
        description="An agent's tool calls in this answer (name, input, result).",
    )


class CheckResult(BaseModel):
    """How a change's check command ended (in the item's worktree, or on a merged tree)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str
    passed: bool = Field(description="It exited with status 0 within its timeout.")
    exit_status: int | None = Field(None, description="None: killed at its timeout.")
    duration_ms: float = Field(ge=0)
    output: str = Field("", description="The last lines of what it printed.")
    tree: str | None = Field(None, description="The git tree it ran on.")


class Changes(BaseModel):
    """What a session or item changed in its instance's worktree, committed on a branch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="The session's id (an item's session).")
    worker: str
    repo: str = Field(description="The repository the worktree belongs to.")
    branch: str = Field(
        description="toolfleet/changes/<id>, holding the commit (nothing else: the name "
        "goes to git, which must never take it for an option).",
        pattern=r"^toolfleet/changes/[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$",
    )
    base: str = Field(description="The commit the worktree was reset to.")
    commit: str | None = Field(None, description="The change's commit (None: nothing changed).")
    files: list[str] = Field(default_factory=list)
    insertions: int = Field(0, ge=0)
    deletions: int = Field(0, ge=0)
    patch: str = Field("", description="The diff from base, capped.")
    truncated: bool = Field(False, description="The patch was cut at its cap.")
    state: Literal["pending", "ready", "rejected", "applied", "discarded", "empty"] = Field(
        "pending",
        description="pending: no check ran on it; ready: its check passed; rejected: "
        "its check failed (never applied without --force).",
    )
    check: CheckResult | None = Field(None, description="The last check, on this tree.")
    repairs: int = Field(0, ge=0, description="Repair turns the agent was given.")
    created_at: float = Field(description="Unix time it was committed.")


class InstanceHealth(BaseModel):
    """One worker's health record, refreshed by its heartbeat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker: str
    profile: str
    state: State
    pid: int | None = Field(None, description="Tool process id (None while down).")
    worker_pid: int
    generation: int = Field(ge=0)
    restarts: int = Field(0, ge=0)
    prompts_served: int = Field(ge=0)
    last_latency_ms: float | None = None
    p50_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    rss_bytes: int | None = None
    started_at: float = Field(description="Unix time the current instance started.")
    updated_at: float = Field(description="Unix time of this record.")
    last_error: str | None = None
    queues: list[str] = Field(default_factory=list)
    sandbox: str = Field(
        "none",
        description="How the tool is confined: strict, or none (with why, where strict was "
        "asked for and the host cannot confine).",
    )
    session: str | None = Field(None, description="Session holding the instance, if leased.")
    busy_since: float | None = Field(
        None, description="Unix time the running prompt began (None while no prompt runs)."
    )
    prompt_id: str | None = Field(
        None, description="Id of the running prompt (None while none runs): to cancel it."
    )
    usage_total: Usage | None = Field(
        None, description="What this worker's prompts reported spending, summed."
    )
    holding: list[str] = Field(
        default_factory=list,
        description="Prompt ids this worker received and has not finished (see orphans).",
    )
    version: str

    @property
    def busy(self) -> bool:
        return self.state == "busy"


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema of each record, by the file name it has under ``schema/``."""
    return {
        "prompt_result.schema.json": PromptResult.model_json_schema(),
        "instance_health.schema.json": InstanceHealth.model_json_schema(),
        "changes.schema.json": Changes.model_json_schema(),
    }


def write_schemas(directory: Path | str) -> None:
    """Write :func:`json_schemas` into ``directory`` (run: python -m toolfleet.models)."""
    for name, schema in json_schemas().items():
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        (Path(directory) / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_schemas(Path(__file__).resolve().parents[2] / "schema")
