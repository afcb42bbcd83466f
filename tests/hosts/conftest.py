"""Host-suite fixtures: a Net of namespaces per test, the suite skipped where none can be made."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .net import Net

__all__ = ["namespaces_unavailable", "net"]


@functools.cache
def namespaces_unavailable() -> str:
    """Why network namespaces can't be made here ('' when they can); probed once per
    process: a namespace and a bridge made and deleted."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "no ip binary (iproute2)"
    probe = f"tfprobe{os.getpid()}"[:15]
    for make, undo in (
        (["ip", "netns", "add", probe], ["ip", "netns", "del", probe]),
        (["ip", "link", "add", probe, "type", "bridge"], ["ip", "link", "del", probe]),
    ):
        done = subprocess.run(make, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            return f"'{' '.join(make)}' failed: {done.stderr.strip()}"
        subprocess.run(undo, capture_output=True, timeout=30)
    return ""


@pytest.fixture(autouse=True)
def _namespaces() -> None:
    """Skip every test of the suite where namespaces are unavailable."""
    why = namespaces_unavailable()
    if why and os.environ.get("TOOLFLEET_REQUIRE_HOSTS"):  # CI, as root: must run
        pytest.fail(f"network namespaces unavailable here: {why} (TOOLFLEET_REQUIRE_HOSTS)")
    if why:
        pytest.skip(f"network namespaces unavailable here: {why}")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """A Net of this test's own, its hosts' directories under ``tmp_path``; closed
    after the test."""
    with Net(tmp_path) as made:
        yield made
