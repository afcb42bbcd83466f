"""Tool profiles: how to start, drive and stop one kind of tool (built-ins + TOML)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from toolfleet.errors import ConfigError
from toolfleet.validation import DEFAULT_MAX_PROMPT_BYTES

__all__ = [
    "AIDER_USAGE",
    "BUILTIN_PROFILES",
    "USAGE_GROUPS",
    "Profile",
    "get_profile",
    "load_profiles",
]

Detector = Literal["marker", "sentinel", "quiescence"]
Encoder = Literal["lines", "python", "bash", "node", "sqlite", "aider"]

# Defined inside the python tool at start-up: runs a whole (multi-line) prompt the way
# the REPL runs one statement, echoing the value of a trailing expression. A traceback
# starts at the prompt's own code, as the REPL's does: the helper's frames (and those of
# codeop and ast compiling the prompt) are not shown.
PYTHON_HELPER = """\
def _tf_exec(src):
    import ast, codeop, sys, traceback
    try:
        if src.strip() and codeop.compile_command(src, '<prompt>', 'exec') is None:
            print('SyntaxError: incomplete input', file=sys.stderr)
            return
        tree = ast.parse(src, '<prompt>', 'exec')
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        g = sys.modules['__main__'].__dict__
        exec(compile(tree, '<prompt>', 'exec'), g)
        if last is not None:
            exec(compile(ast.Interactive(body=[last]), '<prompt>', 'single'), g)
    except Exception as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != '<prompt>':
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb)
        sys.last_type, sys.last_value = type(e), e
"""


#: the groups a usage pattern may name (at least one of them)
USAGE_GROUPS = ("sent", "received", "cost")
_COUNT = r"[\d.,]+[kM]?"
#: aider 0.86's report after each reply (aider/coders/base_coder.py), e.g.
#: "Tokens: 2.5k sent, 1.2k cache write, 120 received. Cost: $0.0012 message, $0.0034
#: session." (the Cost part only when the model has a price)
AIDER_USAGE = (
    rf"Tokens: (?P<sent>{_COUNT}) sent(?:, {_COUNT} cache (?:write|hit))*, "
    rf"(?P<received>{_COUNT}) received\.(?:\s+Cost: \$(?P<cost>[\d.]+) message)?"
)


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
    protocol: Literal["pty", "claude-stream-json", "codex-app-server", "acp"] = Field(
        "pty",
        description="How the tool is spoken to: 'pty' (a terminal, markers or sentinels), "
        "or an agent's own JSON-lines protocol ('claude-stream-json': Claude Code; "
        "'codex-app-server': Codex; 'acp': the Agent Client Protocol, e.g. Gemini CLI).",
    )
    restart_backoff: float = Field(0.5, ge=0)
    crash_loop_restarts: int = Field(5, gt=0)
    crash_loop_window: float = Field(60.0, gt=0)

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


def _builtin() -> dict[str, Profile]:
    python = Profile(
        name="python",
        description="CPython REPL (python3 -i)",
        argv=["python3", "-q", "-i"],
        env={"PYTHON_BASIC_REPL": "1", "PYTHONUNBUFFERED": "1"},
        setup=[
            "import sys as _tf_sys; _tf_sys.ps1 = '{marker}'; _tf_sys.ps2 = '{continuation}'",
            f"exec({PYTHON_HELPER!r})",
        ],
        encoder="python",
        continuation="tf{nonce}+ ",
        incomplete_pattern=r"(?m)^SyntaxError: incomplete input",
        error_pattern=r"(?m)^(Traceback \(most recent call last\):|\w+Error: )",
        exit_command="exit()",
    )
    bash = Profile(
        name="bash",
        description="GNU bash without line editing",
        argv=["bash", "--noediting", "--noprofile", "--norc", "-i"],
        setup=["PS1='' PS2='' PROMPT_COMMAND=''; set +o history +m"],
        detector="sentinel",
        encoder="bash",
        sentinel="printf '%s%s:%s\\n' '{head}' '{tail}' \"$?\"",
        incomplete_pattern=(
            r"unexpected EOF while looking for matching|syntax error: unexpected end of file"
        ),
        exit_command="exit",
    )
    sqlite3 = Profile(
        name="sqlite3",
        description="SQLite shell on an in-memory database",
        argv=["sqlite3", "-interactive", ":memory:"],
        setup=[".prompt '{marker}' '{continuation}'"],
        continuation="tf{nonce}+ ",
        encoder="sqlite",
        error_pattern=r"(?m)^(Parse |Runtime )?[Ee]rror( near line \d+)?:",
        exit_command=".quit",
    )
    node = Profile(
        name="node",
        description="Node.js REPL",
        argv=["node", "--interactive"],
        env={"NODE_NO_READLINE": "1", "NODE_DISABLE_COLORS": "1", "FORCE_COLOR": "0"},
        setup=[
            "repl.repl.setPrompt('{marker}')",
            "globalThis._tf = (s) => require('vm').runInThisContext(s, {filename: 'prompt'})",
        ],
        encoder="node",
        incomplete_pattern=r"SyntaxError: (Unexpected end of input|Unterminated)",
        error_pattern=r"(?m)^(Uncaught )?\w*Error\b",
        exit_command=".exit",
    )
    echo = Profile(
        name="echo",
        description="Scripted test tool: echoes lines; ':help' lists its commands",
        argv=["{python}", "{toolfleet}/tool/echo_tool.py"],
        setup=[":prompt {marker}"],
        exit_command=":exit",
        reset=[":reset"],
        start_timeout=10.0,
    )
    aider = Profile(
        name="aider",
        description="aider AI pair programmer (model and keys from AIDER_* variables)",
        argv=[
            "aider",
            "--no-pretty",
            "--no-fancy-input",
            "--yes-always",
            "--no-analytics",
            "--no-check-update",
            "--no-show-release-notes",
            "--no-auto-commits",
        ],
        env={
            "AIDER_ANALYTICS_DISABLE": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            # each instance its own HOME and history files, or instances on one machine
            # overwrite each other's
            "HOME": "{instance_dir}",
            "AIDER_CHAT_HISTORY_FILE": "{instance_dir}/chat.history.md",
            "AIDER_INPUT_HISTORY_FILE": "{instance_dir}/input.history",
        },
        # '> ', 'diff> ', 'diff-fenced> ', 'architect multi> ' ... by edit format
        ready_pattern=r"(?m)^[\w-]*(?: multi)?> $",
        marker="> ",
        settle_ms=300,
        encoder="aider",
        # aider echoes a blank line after reading input, and its prompt is a blank line,
        # the chat's file list, then '> ': neither belongs to the answer
        strip_output=[r"\r?\n\r?\n(?:[^\r\n]+\r?\n)*\Z", r"\A\r?\n"],
        interrupt="\x03",
        interrupt_cooldown=2.5,
        exit_command="/exit",
        reset=["/reset"],
        usage_pattern=AIDER_USAGE,
        # aider's repo-map cache (.aider.tags.cache.v4) in a worktree: no change, and
        # worth keeping from one item to the next
        workspace_ignore=[".aider*"],
        start_timeout=60.0,
        prompt_timeout=600.0,
    )
    claude = Profile(
        name="claude",
        description="Claude Code through its stream-json protocol (ANTHROPIC_* variables)",
        argv=[
            "claude",
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            # edits files without asking (bypassPermissions refuses to run as root)
            "--permission-mode",
            "acceptEdits",
            "--no-session-persistence",
        ],
        env={
            # each instance its own HOME and config; no traffic but the model's
            "HOME": "{instance_dir}",
            "CLAUDE_CONFIG_DIR": "{instance_dir}/.claude",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
        },
        protocol="claude-stream-json",
        start_timeout=60.0,
        prompt_timeout=600.0,
    )
    gemini = Profile(
        name="gemini",
        description="Gemini CLI through the Agent Client Protocol (GEMINI_* variables)",
        # --yolo: its tools run without asking (edits, shell) in the instance's worktree
        argv=["gemini", "--acp", "--yolo"],
        env={
            "HOME": "{instance_dir}",
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
            "GEMINI_CLI_NO_RELAUNCH": "1",
        },
        protocol="acp",
        start_timeout=60.0,
        prompt_timeout=600.0,
    )
    codex = Profile(
        name="codex",
        description="OpenAI Codex CLI through its app-server (OPENAI_*, CODEX_MODEL)",
        argv=["codex", "app-server"],
        # its config.toml (written at start: no approvals, full access to its worktree)
        env={"HOME": "{instance_dir}", "CODEX_HOME": "{instance_dir}/codex"},
        protocol="codex-app-server",
        start_timeout=60.0,
        prompt_timeout=600.0,
    )
    builtins = (python, bash, sqlite3, node, echo, aider, claude, gemini, codex)
    return {p.name: p for p in builtins}


BUILTIN_PROFILES: dict[str, Profile] = _builtin()


def load_profiles(path: Path | str | None = None) -> dict[str, Profile]:
    """Built-in profiles, plus (and overridden by) those of the TOML file at ``path``.

    The file holds one ``[profiles.NAME]`` table per profile; ``extends = "python"``
    starts from another profile and changes only the fields given.
    """
    profiles = dict(BUILTIN_PROFILES)
    if path is None:
        return profiles
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read profiles file {path}: {exc}") from None
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: [profiles] must be a table of tables")
    for name, table in tables.items():
        profiles[name] = _from_table(name, table, profiles, path)
    return profiles


def _from_table(name: str, table: Any, known: dict[str, Profile], path: Path | str) -> Profile:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: profiles.{name} must be a table")
    fields = dict(table)
    base_name = fields.pop("extends", None)
    base: dict[str, Any] = {}
    if base_name is not None:
        if base_name not in known:
            raise ConfigError(f"{path}: profiles.{name} extends unknown profile {base_name!r}")
        base = known[base_name].model_dump()
    try:
        return Profile.model_validate({**base, **fields, "name": name})
    except ValidationError as exc:
        raise ConfigError(f"{path}: profiles.{name} is invalid: {exc}") from None


def get_profile(name: str, path: Path | str | None = None) -> Profile:
    """The profile called ``name`` or a :class:`ConfigError` listing the known ones."""
    profiles = load_profiles(path)
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise ConfigError(f"unknown profile {name!r}; known profiles: {known}") from None
