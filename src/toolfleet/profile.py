"""The profile: how to start, drive and stop one kind of tool (a validated model)."""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from toolfleet.validation import DEFAULT_MAX_PROMPT_BYTES

__all__ = ["USAGE_GROUPS", "Profile"]

Detector = Literal["marker", "sentinel", "quiescence"]
Encoder = Literal["lines", "python", "bash", "node", "sqlite", "aider"]

#: the groups a usage pattern may name (at least one of them)
USAGE_GROUPS = ("sent", "received", "cost")


class Profile(BaseModel):
    """An operator-defined recipe for one kind of tool.

    ``setup`` lines are typed after start; ``{marker}`` and ``{continuation}`` in them are
    replaced by the instance's nonce-carrying prompt strings. Without ``reset`` commands a
    session's instance is restarted to clear its state. The first setup line must
    make the tool show ``{marker}``, and each setup line makes it show one prompt.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    description: str = ""
    argv: list[str] = Field(
        min_length=1, description="{python}: this interpreter; {toolfleet}: the package folder."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="'{instance_dir}': a private folder per instance."
    )
    sandbox: Literal["strict", "auto", "none"] = Field(
        "none",
        description="strict: under bubblewrap, the system read-only, writable only its "
        "instance folder (its HOME) and its worktree, its own /tmp and PID namespace, the "
        "worker's HOME hidden; auto (the built-ins'): the same, and the folder it works "
        "in writable without a worktree too; where the host cannot confine, the worker "
        "says so and runs it plain.",
    )
    upstream: str | None = Field(
        None,
        description="The model upstream (an [upstreams.NAME] table of the profiles file) "
        "whose calls go through the worker's model gateway: the agent is pointed at the "
        "gateway, the fleet's limits are kept, usage is read from the wire, budgets hold "
        "during the prompt, and the provider's key stays with the worker.",
    )
    network: Literal["none", "open"] = Field(
        "none",
        description="Confined: none (no network at all, the REPLs' default) or open (the "
        "agents', for their model's endpoint).",
    )
    max_memory_mb: int | None = Field(
        None,
        gt=0,
        description="Memory the tool and what it starts may use (a cgroup where the host "
        "lets the worker make one, else RLIMIT_AS a process); past it the tool is killed "
        "and the prompt fails with ToolCrashed naming the limit.",
    )
    max_processes: int | None = Field(
        None,
        gt=0,
        description="Processes (and threads) the tool may have at once (cgroup pids.max, "
        "else RLIMIT_NPROC, which does not hold root): a fork bomb ends as ToolCrashed.",
    )
    max_cpus: float | None = Field(
        None,
        gt=0,
        description="Cores the tool and what it starts may use at once (cgroup cpu.max, or "
        "v1's cpu quota): a busy loop is slowed to it, not killed. It needs a cgroup: "
        "where the host lets the worker make none, the worker logs that it is not applied.",
    )
    pass_env: list[str] = Field(
        default_factory=list,
        description="The worker's variables the tool gets, by name or pattern ('AIDER_*'). "
        "Nothing else of the worker's environment reaches it but a few harmless ones "
        "(PATH, LANG, proxies, CA bundles); the fleet's own (TOOLFLEET_*, FLOWER_*) never.",
    )
    cwd: str | None = None
    setup: list[str] = Field(default_factory=list)
    reset: list[str] = Field(default_factory=list, description="Commands that clear state.")
    ready_pattern: str | None = Field(None, description="Regex awaited before setup.")
    detector: Detector = "marker"
    encoder: Encoder = "lines"
    marker: str = Field("tf{nonce}> ", description="Main prompt; '{nonce}' makes it unique.")
    continuation: str | None = None
    sentinel: str | None = Field(
        None, description="Command printing '{head}{tail}:<status>' (sentinel detector)."
    )
    settle_ms: int = Field(0, ge=0, description="Quiet time confirming a nonce-less marker.")
    quiet_ms: int = Field(500, gt=0, description="Quiescence: idle time ending a response.")
    incomplete_pattern: str | None = None
    error_pattern: str | None = None
    usage_pattern: str | None = Field(
        None,
        description="A regex finding the tool's usage report in an answer, with named "
        "groups among sent, received (token counts, '2.5k' allowed) and cost.",
    )
    price_per_million: tuple[float, float] | None = Field(
        None,
        description="Money per million tokens sent and received, e.g. [1.25, 10.0]: the "
        "cost of answers whose tool reports tokens but no cost (Gemini CLI, Codex).",
    )
    strip_output: list[str] = Field(
        default_factory=list,
        description="Regexes removed once each from a raw response, in order (screen furniture).",
    )
    interrupt: str = "\x03"
    interrupt_cooldown: float = Field(
        0.0, ge=0, description="Least seconds between two interrupts (aider exits on a quick 2nd)."
    )
    exit_command: str | None = None
    start_timeout: float = Field(30.0, gt=0)
    prompt_timeout: float = Field(60.0, gt=0)
    grace: float = Field(2.0, gt=0, description="Seconds to wait after interrupt or exit.")
    allow_control: bool = False
    max_prompt_bytes: int = Field(DEFAULT_MAX_PROMPT_BYTES, gt=0)
    max_output_bytes: int = Field(1024 * 1024, gt=0)
    max_prompts: int | None = Field(None, gt=0)
    chunk: int = Field(
        1,
        ge=1,
        description="Prompts per message in a map (Fleet.map, toolfleet map) unless the "
        "run says otherwise: several for fast tools, where the queue costs more than "
        "the prompt; 1 for slow ones (each prompt on whichever instance is free).",
    )
    max_age: float | None = Field(None, gt=0)
    max_rss: int | None = Field(None, gt=0)
    on_worker_lost: Literal["rerun", "fail"] = Field(
        "rerun",
        description="A prompt whose worker died mid-prompt: run it again (at least once), "
        "or fail it with ToolCrashed (at most once; costs one Redis command per prompt).",
    )
    workspace: Literal["none", "worktree"] = Field(
        "none",
        description="'worktree': each instance works in its own git worktree of `repo`, reset "
        "to `base` before each session or item; what it changed is committed on a branch.",
    )
    repo: str | None = Field(
        None,
        description="The git repository of worktree workspaces: a path or URL, $VARIABLES "
        "and ~ expanded where it is used (default: the cwd).",
    )
    base: str | None = Field(
        None, description="The commit worktrees are reset to (default: the repo's HEAD)."
    )
    workspace_ignore: list[str] = Field(
        default_factory=list,
        description="Files the tool writes in its worktree that are no change (git "
        "pathspecs, e.g. aider's '.aider*' caches): never committed, kept across resets.",
    )
    check: str | None = Field(
        None,
        description="A shell command that checks a map item's change in its worktree "
        "after its steps ({path} {name} {stem} {index} filled in), e.g. 'pytest -q': "
        "only a change whose check passed is ready to apply (toolfleet map --check).",
    )
    check_timeout: float = Field(600.0, gt=0, description="Seconds a check may run.")
    repairs: int = Field(
        0, ge=0, description="Repair turns when the check fails (toolfleet map --repair)."
    )
    repair: str = Field(
        "The check `{check}` failed with:\n{check_output}\nFix {path} so that it passes.",
        description="The repair step: {check} (the command), {check_output} (the tail of "
        "its output) and the item's {path} {name} {stem} {index}.",
    )
    protocol: Literal["pty", "claude-stream-json", "codex-app-server", "acp"] = Field(
        "pty",
        description="How the tool is spoken to: 'pty' (a terminal, markers or sentinels), "
        "or an agent's own JSON-lines protocol ('claude-stream-json': Claude Code; "
        "'codex-app-server': Codex; 'acp': the Agent Client Protocol, e.g. Gemini CLI).",
    )
    restart_backoff: float = Field(0.5, ge=0)
    crash_loop_restarts: int = Field(5, gt=0)
    crash_loop_window: float = Field(60.0, gt=0)

    @field_validator("price_per_million")
    @classmethod
    def _prices(cls, prices: tuple[float, float] | None) -> tuple[float, float] | None:
        if prices is not None and min(prices) < 0:
            raise ValueError("price_per_million: prices are 0 or more")
        return prices

    @field_validator("usage_pattern")
    @classmethod
    def _usage_groups(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            groups = set(re.compile(pattern).groupindex)
        except re.error as exc:
            raise ValueError(f"usage_pattern is no regular expression: {exc}") from None
        if not groups or not groups <= set(USAGE_GROUPS):
            raise ValueError(f"usage_pattern must name groups among {', '.join(USAGE_GROUPS)}")
        return pattern

    def repository(self) -> str | None:
        """``repo`` with $VARIABLES and ~ expanded (None when not set)."""
        return os.path.expanduser(os.path.expandvars(self.repo)) if self.repo else None
