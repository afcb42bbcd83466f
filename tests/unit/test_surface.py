"""The public surface: __all__, docstrings, and a producer that needs no tool layer."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import toolfleet


def test_all_lists_exactly_the_public_names():
    public = {
        name
        for name in dir(toolfleet)
        if not name.startswith("_") and not inspect.ismodule(getattr(toolfleet, name))
    }
    assert public == set(toolfleet.__all__) - {"__version__"}


def test_every_module_has_a_docstring_and_all():
    for info in pkgutil.walk_packages(toolfleet.__path__, "toolfleet."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        assert module.__doc__ and module.__doc__.strip(), info.name
        if info.name.endswith("echo_tool"):
            continue
        assert hasattr(module, "__all__"), info.name


def test_producer_imports_neither_tool_layer_nor_workers():
    code = (
        "import sys, toolfleet, toolfleet.cli, toolfleet.broker;"
        "toolfleet.Fleet(toolfleet.Settings());"
        "bad = [m for m in sys.modules if m.startswith(('ptyprocess', 'pexpect',"
        " 'toolfleet.tool', 'toolfleet.workers', 'toolfleet.workers.tasks'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


SRC = Path(toolfleet.__file__).resolve().parent
#: attributes private to kombu's Redis transport (its channel's and its QoS's)
KOMBU_INTERNALS = re.compile(
    r"\.(unacked_key|unacked_index_key|unacked_mutex_key|priority_steps|_q_for_pri"
    r"|conn_or_acquire|restore_by_tag|restore_visible|_delivered)\b"
)


def test_no_module_is_over_400_lines():
    long = {
        str(path.relative_to(SRC)): lines
        for path in SRC.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 400
    }
    assert not long, f"split these modules (400 lines at most): {long}"


def test_kombu_internals_only_inside_broker():
    reaching = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.parent.name != "broker" and KOMBU_INTERNALS.search(path.read_text())
    )
    assert not reaching, f"kombu's internals belong in toolfleet/broker/: {reaching}"
