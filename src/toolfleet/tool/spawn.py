"""Starting and stopping a tool process in a pseudo-terminal, leaving no orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from ptyprocess import PtyProcess, PtyProcessError

from toolfleet.errors import ToolCrashed
from toolfleet.parentdeath import die_with_parent

__all__ = ["is_alive", "kill_group", "session_members", "spawn_tool", "tool_env"]

# variables of the worker's own shell that would change a tool's prompt or start-up
_DROP = ("PS1", "PS2", "PS4", "PROMPT_COMMAND", "PYTHONSTARTUP", "BASH_ENV", "ENV")
# ptyprocess reaps in isalive() with waitpid: of two threads asking at once after the
# tool died, one reaps it and the other gets ECHILD and raises. Every reap goes through
# this lock (the heartbeat, the watcher and the prompt thread all ask).
_REAP = threading.RLock()


def tool_env(
    extra: Mapping[str, str],
    base: Mapping[str, str] | None = None,
    instance_dir: str | None = None,
) -> dict[str, str]:
    """The environment of a tool: the worker's, made plain (no colours, pager, prompts),
    then ``extra`` (a profile's ``env``, ``{instance_dir}`` filled in when given)."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _DROP}
    env.update(TERM="dumb", NO_COLOR="1", PAGER="cat", GIT_PAGER="cat", COLUMNS="500")
    if instance_dir is not None:
        extra = {k: v.replace("{instance_dir}", instance_dir) for k, v in extra.items()}
    env.update(extra)
    return env


# Signals a tool must receive with their default action, whatever the worker inherited:
# a worker started as a background job ignores SIGINT (so the tool would ignore Ctrl-C,
# and no prompt could be interrupted), and Python ignores SIGPIPE.
_DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ)


def _in_child() -> None:
    """Runs in the tool's process before exec: die with the worker, plain signals, no
    line buffering."""
    die_with_parent(signal.SIGKILL)
    for sig in _DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    # Non-canonical input: lines of any length reach the tool (the canonical-mode line
    # limit is 4095 bytes); signals (Ctrl-C) still work.
    attrs = termios.tcgetattr(0)
    attrs[3] &= ~termios.ICANON
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(0, termios.TCSANOW, attrs)


def spawn_tool(argv: list[str], env: dict[str, str], cwd: str | None) -> PtyProcess:
    """Start ``argv`` in a new pty and session, with echo off.

    ``{python}`` in ``argv`` is this interpreter, ``{toolfleet}`` this package's folder.
    """
    package = str(Path(__file__).resolve().parent.parent)
    argv = [a.replace("{python}", sys.executable).replace("{toolfleet}", package) for a in argv]
    try:
        return PtyProcess.spawn(
            argv, cwd=cwd, env=env, echo=False, preexec_fn=_in_child, dimensions=(50, 500)
        )
    except (OSError, FileNotFoundError) as exc:
        raise ToolCrashed(f"cannot start {argv[0]!r}: {exc}") from None


def is_alive(proc: PtyProcess) -> bool:
    """Whether the tool process runs; safe to call from any thread."""
    with _REAP:
        try:
            return bool(proc.isalive())
        except PtyProcessError:  # reaped by someone else: it is gone
            return False


def session_members(sid: int) -> list[int]:
    """Processes of session ``sid`` (the tool and everything it started, jobs included)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid:
                members.append(int(entry.name))
    return members


def kill_group(proc: PtyProcess, grace: float) -> None:
    """SIGTERM the tool's process group, SIGKILL it after ``grace`` seconds, reap it.

    Then SIGKILL whatever else is left in the tool's session (background jobs).
    """
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        if not is_alive(proc):
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        end = time.monotonic() + wait
        while is_alive(proc) and time.monotonic() < end:
            time.sleep(0.01)
    for pid in session_members(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with _REAP, contextlib.suppress(OSError, PtyProcessError):
        proc.close(force=True)
