"""Checks that names are real Flower options, in a fresh interpreter (tornado's options
are process-global): shared by the compose and the Kubernetes tests."""

from __future__ import annotations

import subprocess
import sys

_CHECK = (
    "import sys, flower.options\nfrom tornado.options import options\n"
    "from flower.command import is_flower_envvar\n"
    "missing = [n for n in sys.argv[1:] if n not in options]\n"
)
# Flower reads FLOWER_<OPTION> variables: the credentials must be ones, and a Service's
# FLOWER_PORT=tcp://... would be one too
_ENVVARS = (
    "missing += [n for n in ('FLOWER_USER', 'FLOWER_PASSWORD') if is_flower_envvar(n)]\n"
    "missing += [] if is_flower_envvar('FLOWER_PORT') else ['FLOWER_PORT is no option']\n"
)


def assert_flower_options(names: list[str], *, envvars: bool = False) -> None:
    """Every one of ``names`` is a Flower (tornado) option; with ``envvars`` also that
    FLOWER_USER/FLOWER_PASSWORD are not option variables and FLOWER_PORT is one."""
    script = (
        _CHECK + (_ENVVARS if envvars else "") + "print(missing)\nsys.exit(1 if missing else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"not Flower options: {proc.stdout}{proc.stderr}"
