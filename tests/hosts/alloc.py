"""The ``ip`` command, namespace processes, and the machine-wide choice of a free /24."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "LOCK_PATH",
    "PREFIX",
    "allocate",
    "bridge_name",
    "ip",
    "kill_namespace",
    "links",
    "namespace_pids",
    "namespaces",
    "release",
    "signal_namespace",
]

LOCK_PATH = Path("/tmp/toolfleet-hosts.lock")
PREFIX = "10.77"  # every Net is 10.77.<k>.0/24 on bridge tfbr<k>
SLOTS = range(1, 251)
OWNER = "toolfleet-hosts pid="  # the bridge's alias: which process holds the slot
# While any Net exists, the whole range is unreachable but for the Nets' own /24s: an
# address of a closed Net fails here and now instead of leaving by the default route.
GUARD = ("unreachable", f"{PREFIX}.0.0/16")


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS``; its output. A failure raises RuntimeError with ip's message,
    unless ``check`` is false."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def links() -> set[str]:
    """The names of the interfaces of the root namespace."""
    names = set()
    for line in ip("-o", "link", "show").splitlines():
        # "7: tf3a@if2: <...>": the name, without the peer's "@..."
        parts = line.split(":", 2)
        if len(parts) == 3:
            names.add(parts[1].strip().split("@")[0])
    return names


def namespaces() -> set[str]:
    """The names of the named network namespaces (``ip netns list``)."""
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


def bridge_name(k: int) -> str:
    """The bridge of slot ``k``."""
    return f"tfbr{k}"


def namespace_pids(ns: str) -> set[int]:
    """The processes in namespace ``ns`` (none when it does not exist); zombies are
    not listed."""
    out = ip("netns", "pids", ns, check=False)
    return {int(word) for word in out.split() if word.isdigit()}


def signal_namespace(ns: str, *signums: signal.Signals) -> set[int]:
    """Send each of ``signums`` in turn to every process in ``ns``; the processes."""
    pids = namespace_pids(ns)
    for signum in signums:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
    return pids


def kill_namespace(ns: str, timeout: float = 10.0) -> None:
    """SIGCONT (a stopped process dies only once resumed) then SIGKILL every process in
    ``ns``, again until none is left; RuntimeError naming them after ``timeout`` s."""
    end = time.monotonic() + timeout
    while signal_namespace(ns, signal.SIGCONT, signal.SIGKILL):
        if time.monotonic() > end:
            raise RuntimeError(f"processes left in namespace {ns}: {namespace_pids(ns)}")
        time.sleep(0.05)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Hold the machine-wide lock of the slots (every test process takes it)."""
    fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _owner(bridge: str) -> int | None:
    """The pid that made ``bridge``, from its alias (None when it is not ours)."""
    try:
        alias = Path(f"/sys/class/net/{bridge}/ifalias").read_text().strip()
    except OSError:
        return None
    found = re.fullmatch(re.escape(OWNER) + r"(\d+)", alias)
    return int(found.group(1)) if found else None


def _alive(pid: int) -> bool:
    """True while process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_slot(k: int, link: str) -> bool:
    """True when ``link`` is a host's veth of slot ``k`` (host names start with a
    letter, so tf1a is slot 1's and tf12a slot 12's)."""
    return re.match(rf"tf{k}[a-z]", link) is not None


def _reap(k: int) -> None:
    """Tear down what a dead process left in slot ``k``: its namespaces' processes,
    the namespaces, their veths and the bridge."""
    for ns in namespaces():
        if ns.startswith(f"tf{k}-"):
            with contextlib.suppress(RuntimeError):
                kill_namespace(ns)
            ip("netns", "del", ns, check=False)
    for name in links():
        if _in_slot(k, name):
            ip("link", "del", name, check=False)
    ip("link", "del", bridge_name(k), check=False)


def _stale() -> list[int]:
    """The slots whose bridge a process that has died made (it never closed its Net)."""
    found = []
    for name in links():
        matched = re.fullmatch(r"tfbr(\d+)", name)
        owner = _owner(name) if matched else None
        if matched and owner is not None and not _alive(owner):
            found.append(int(matched.group(1)))
    return found


def allocate() -> int:
    """Take a free slot ``k`` for this process and make its bridge (the bridge's
    existence is the allocation: deleting it frees the slot). Whatever a process that
    died without closing its Net left is torn down first."""
    with _locked():
        for k in _stale():
            _reap(k)
        present = links()
        taken = namespaces()
        for k in SLOTS:
            # a name left by a half-made Net of this slot would clash: all must be free
            if bridge_name(k) in present or any(_in_slot(k, name) for name in present):
                continue
            if any(ns.startswith(f"tf{k}-") for ns in taken):
                continue
            ip("route", "replace", *GUARD)
            ip("link", "add", bridge_name(k), "type", "bridge")
            ip("link", "set", "dev", bridge_name(k), "alias", f"{OWNER}{os.getpid()}")
            return k
    raise RuntimeError(f"no free test subnet left in {PREFIX}.0.0/16")


def release(k: int) -> None:
    """Free slot ``k``: delete its bridge; the last slot freed takes the guard route."""
    with _locked():
        ip("link", "del", bridge_name(k), check=False)
        if not any(re.fullmatch(r"tfbr\d+", name) for name in links()):
            ip("route", "del", *GUARD, check=False)
