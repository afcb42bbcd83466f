"""The public surface: __all__, docstrings, and a producer that needs no tool layer."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

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
