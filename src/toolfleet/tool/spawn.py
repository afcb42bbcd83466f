"""Starting and stopping a tool process in a pseudo-terminal, leaving no orphans."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ptyprocess import PtyProcess, PtyProcessError

from toolfleet.errors import ToolCrashed
from toolfleet.parentdeath import die_with_parent
from toolfleet.tool.sandbox import SandboxPolicy, confine

__all__ = [
    "FLEET_ENV",
    "HARMLESS_ENV",
    "is_alive",
    "kill_group",
    "session_members",
    "spawn_tool",
    "tool_env",
]

# ptyprocess reaps in isalive() with waitpid: of two threads asking at once after the
# tool died, one reaps it and the other gets ECHILD and raises. Every reap goes through
# this lock (the heartbeat, the watcher and the prompt thread all ask).
_REAP = threading.RLock()

#: the worker's variables every tool gets: where programs and certificates are, the
#: locale, the proxies (no secret of the fleet's among them)
HARMLESS_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
#: the fleet's own variables: never a tool's, whatever a profile passes
FLEET_ENV = ("TOOLFLEET_*", "FLOWER_*", "CELERY_*", "REDIS_*", "WEB_TOKEN")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def tool_env(
    extra: Mapping[str, str],
    base: Mapping[str, str] | None = None,
    instance_dir: str | None = None,
    passed: Iterable[str] = (),
) -> dict[str, str]:
    """The environment of a tool, built from an allow-list, never inherited whole: of the
    worker's variables (``base``) only the harmless ones and those ``passed`` names (a
    profile's ``pass_env``), never the fleet's own; made plain (no colours, pager); then
    ``extra`` (a profile's ``env``, ``{instance_dir}`` filled in when given)."""
    allowed = (*HARMLESS_ENV, *passed)
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if _matches(k, allowed) and not _matches(k, FLEET_ENV)}
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


def _in_sandboxed_child() -> None:
    """As :func:`_in_child`, for bubblewrap: Ctrl-C and Ctrl-\\ ignored by it (the tool
    gets them back through ``env --default-signal``, see :func:`sandbox.confine`)."""
    _in_child()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


def spawn_tool(
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    sandbox: tuple[str, SandboxPolicy] | None = None,
    prepare: Callable[[], None] | None = None,
) -> PtyProcess:
    """Start ``argv`` in a new pty and session, with echo off; confined by ``sandbox``
    (bubblewrap's path and the policy) when given; ``prepare`` runs in the child before
    it (entering the tool's limits).

    ``{python}`` in ``argv`` is this interpreter, ``{toolfleet}`` this package's folder.
    """
    package = str(Path(__file__).resolve().parent.parent)
    argv = [a.replace("{python}", sys.executable).replace("{toolfleet}", package) for a in argv]
    setup = _in_child
    if sandbox is not None:
        argv, setup = confine(argv, sandbox[1], sandbox[0]), _in_sandboxed_child

    def in_child() -> None:
        setup()
        if prepare is not None:
            prepare()

    try:
        return PtyProcess.spawn(
            argv, cwd=cwd, env=env, echo=False, preexec_fn=in_child, dimensions=(50, 500)
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
