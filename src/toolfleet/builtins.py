"""The built-in profiles: python, bash, sqlite3, node, echo, aider, claude, gemini, codex."""

from __future__ import annotations

from toolfleet.profile import Profile

__all__ = ["AIDER_USAGE", "BUILTIN_PROFILES", "FAST_CHUNK", "PYTHON_HELPER"]

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


_COUNT = r"[\d.,]+[kM]?"
#: aider 0.86's report after each reply (aider/coders/base_coder.py), e.g.
#: "Tokens: 2.5k sent, 1.2k cache write, 120 received. Cost: $0.0012 message, $0.0034
#: session." (the Cost part only when the model has a price)
AIDER_USAGE = (
    rf"Tokens: (?P<sent>{_COUNT}) sent(?:, {_COUNT} cache (?:write|hit))*, "
    rf"(?P<received>{_COUNT}) received\.(?:\s+Cost: \$(?P<cost>[\d.]+) message)?"
)


#: prompts per message in a map for the REPLs, which answer in about a millisecond
FAST_CHUNK = 16


def _builtin() -> dict[str, Profile]:
    python = Profile(
        name="python",
        sandbox="auto",
        chunk=FAST_CHUNK,
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
        sandbox="auto",
        chunk=FAST_CHUNK,
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
        sandbox="auto",
        chunk=FAST_CHUNK,
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
        sandbox="auto",
        chunk=FAST_CHUNK,
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
        sandbox="auto",
        chunk=FAST_CHUNK,
        description="Scripted test tool: echoes lines; ':help' lists its commands",
        argv=["{python}", "{toolfleet}/tool/echo_tool.py"],
        setup=[":prompt {marker}"],
        exit_command=":exit",
        reset=[":reset"],
        # its test switches (echo_tool.py): fail at start, log what it ran
        pass_env=["ECHO_TOOL_*"],
        start_timeout=10.0,
    )
    aider = Profile(
        name="aider",
        sandbox="auto",
        network="open",
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
        # its model, keys and endpoint (aider reads every option from AIDER_*; litellm
        # the providers' own variables)
        pass_env=["AIDER_*", "OPENAI_*", "ANTHROPIC_*", "GEMINI_*", "OPENROUTER_*"],
        start_timeout=60.0,
        prompt_timeout=600.0,
    )
    claude = Profile(
        name="claude",
        sandbox="auto",
        network="open",
        description="Claude Code through its stream-json protocol (ANTHROPIC_* variables)",
        argv=[
            "claude",
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
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
        pass_env=["ANTHROPIC_*", "CLAUDE_*"],
        protocol="claude-stream-json",
        start_timeout=60.0,
        prompt_timeout=600.0,
    )
    gemini = Profile(
        name="gemini",
        sandbox="auto",
        network="open",
        description="Gemini CLI through the Agent Client Protocol (GEMINI_* variables)",
        # --yolo: its tools run without asking (edits, shell) in the instance's worktree
        argv=["gemini", "--acp", "--yolo"],
        env={
            "HOME": "{instance_dir}",
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
            "GEMINI_CLI_NO_RELAUNCH": "1",
        },
        pass_env=["GEMINI_*", "GOOGLE_*"],
        protocol="acp",
        start_timeout=60.0,
        prompt_timeout=600.0,
    )
    codex = Profile(
        name="codex",
        sandbox="auto",
        network="open",
        description="OpenAI Codex CLI through its app-server (OPENAI_*, CODEX_MODEL)",
        argv=["codex", "app-server"],
        # its config.toml (written at start: no approvals, full access to its worktree)
        env={"HOME": "{instance_dir}", "CODEX_HOME": "{instance_dir}/codex"},
        pass_env=["OPENAI_*", "CODEX_*"],
        protocol="codex-app-server",
        start_timeout=60.0,
        prompt_timeout=600.0,
    )
    builtins = (python, bash, sqlite3, node, echo, aider, claude, gemini, codex)
    return {p.name: p for p in builtins}


BUILTIN_PROFILES: dict[str, Profile] = _builtin()
