"""Running a change's check: a shell command in a tree, confined where the host allows,
with a timeout, its whole process group killed at the end; the tail of what it printed."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

from toolfleet.models import CheckResult
from toolfleet.state import default_state_dir

if TYPE_CHECKING:  # the tool layer is imported when a check runs, not by producers at start
    from toolfleet.tool.sandbox import SandboxPolicy

__all__ = ["CHECK_TAIL_BYTES", "CHECK_TAIL_LINES", "default_sandbox", "run_check", "tail"]

#: what a check's outcome keeps of its output: its last lines, at most this much
CHECK_TAIL_LINES = 40
CHECK_TAIL_BYTES = 4096


def tail(text: str, lines: int = CHECK_TAIL_LINES, size: int = CHECK_TAIL_BYTES) -> str:
    """The last ``lines`` lines of ``text``, at most ``size`` bytes of them."""
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    data = kept.encode("utf-8", "replace")
    if len(data) > size:
        kept = data[-size:].decode("utf-8", "ignore")
    return kept


def _confined(
    argv: list[str], tree: str, home: str, sandbox: tuple[str, SandboxPolicy] | None
) -> list[str]:
    """``argv`` under ``sandbox`` (the tool's), with ``tree`` (and its git) and ``home``
    writable."""
    if sandbox is None:
        return argv
    from toolfleet.tool.sandbox import SandboxPolicy, confine, worktree_git

    binary, policy = sandbox
    writable = [*policy.writable, os.path.abspath(tree), home]
    admin, common = worktree_git(tree)
    visible = policy.visible
    if admin is not None and common is not None:
        writable.append(admin)
        visible = (*visible, common)
    policy = SandboxPolicy(tuple(dict.fromkeys(writable)), policy.hidden, policy.network, visible)
    return confine(argv, policy, binary)


def default_sandbox() -> tuple[str, SandboxPolicy] | None:
    """The confinement of a check run by a producer (a merged tree): the agents' code
    runs there, so it sees no HOME, no fleet state and no network, where the host can."""
    from toolfleet.tool.sandbox import SandboxPolicy, program_folders, sandbox_support

    binary, _ = sandbox_support()
    if binary is None:
        return None
    state = os.environ.get("TOOLFLEET_STATE_DIR") or str(default_state_dir())
    hidden = (os.path.expanduser("~"), state)
    return binary, SandboxPolicy((), hidden, "none", program_folders((*hidden, "/tmp"), []))


def run_check(
    command: str,
    tree: str,
    *,
    timeout: float,
    sandbox: tuple[str, SandboxPolicy] | None = None,
    passed_env: tuple[str, ...] = (),
) -> CheckResult:
    """Run ``command`` (``sh -c``) in ``tree``; what became of it. Past ``timeout`` s its
    process group is killed (``exit_status`` None). The environment is a tool's (an
    allow-list of the caller's, never the fleet's secrets) with ``passed_env`` too and
    a HOME of its own."""
    from toolfleet.tool.spawn import tool_env

    home = tempfile.mkdtemp(prefix="toolfleet-check-")
    argv = _confined(["sh", "-c", command], tree, home, sandbox)
    environment = tool_env({"HOME": home}, passed=passed_env)
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            argv,
            cwd=tree,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            with contextlib.suppress(OSError):  # what it left running, too
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    took = (time.monotonic() - started) * 1000
    if status is None:
        text += f"\n(killed: the check ran past its timeout of {timeout:g} s)"
    shutil.rmtree(home, ignore_errors=True)
    return CheckResult(
        command=command,
        passed=status == 0,
        exit_status=status,
        duration_ms=round(took, 1),
        output=tail(text),
    )
