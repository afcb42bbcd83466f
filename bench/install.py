"""Install time of ``./run demo`` on a machine that has never seen the project: the
locked install (a pinned uv from PyPI, the hashed lock/app.txt) against the install it
replaced (pip resolving pyproject.toml's ranges), both with empty download caches.

Run: .venv/bin/python bench/install.py [--rounds N]
Each round clones the repository twice into fresh folders, one at BASELINE (the last
commit that installed with pip) and one at HEAD, and times in each what ``./run demo``
does before the demo starts (its ``install`` function, with nothing cached: no venv, no
uv, PIP_NO_CACHE_DIR=1, an empty UV_CACHE_DIR), then the whole ``./run demo`` in another
fresh clone of each. The two alternate in one process (this machine is noisy); the
ratio is HEAD / BASELINE (target <= 1.0). Needs the network to the package registries.
Figures: bench/out/install.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
#: the last commit whose ./run installed with pip from the ranges
BASELINE = "efc480e"
#: what each ``./run demo`` installs before the demo: its install call
DEMO_INSTALL = {BASELINE: "install worker,redis", "HEAD": "install app"}


def clone(commit: str, into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(into)], check=True)
    subprocess.run(["git", "-C", str(into), "checkout", "-q", commit], check=True)
    return into


def cold_env(scratch: Path) -> dict[str, str]:
    """The environment of a machine that has downloaded nothing yet."""
    cache = scratch / "uv-cache"
    cache.mkdir(exist_ok=True)
    drop = ("VIRTUAL_ENV", "TOOLFLEET_VENV", "TOOLFLEET_LOCK_DIR", "UV_CACHE_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PIP_NO_CACHE_DIR": "1", "UV_CACHE_DIR": str(cache)}


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def install_only(commit: str, scratch: Path) -> float:
    """Seconds of ``./run demo``'s install step in a fresh clone at ``commit``."""
    checkout = clone(commit, scratch / "install")
    # ./run's own install function, as the demo calls it, with ./run's variables
    script = (
        'source <(sed -n "/^install()/,/^}/p" run); set -euo pipefail; '
        "venv=.venv python=python3 TOOLFLEET_LOCK_DIR=lock; export TOOLFLEET_LOCK_DIR; "
        f"{DEMO_INSTALL['HEAD' if commit == 'HEAD' else BASELINE]}"
    )
    return timed(["bash", "-c", script], checkout, cold_env(scratch))


def whole_demo(commit: str, scratch: Path) -> float:
    """Seconds of the whole ``./run demo`` (install, fleet, batch, stop), fresh clone."""
    checkout = clone(commit, scratch / "demo")
    return timed(["./run", "demo"], checkout, cold_env(scratch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, dict[str, list[float]]] = {
        label: {"install": [], "demo": []} for label in (BASELINE, "HEAD")
    }
    for round_ in range(args.rounds):
        order = (BASELINE, "HEAD") if round_ % 2 == 0 else ("HEAD", BASELINE)
        for commit in order:
            with tempfile.TemporaryDirectory(prefix="toolfleet-bench-install-") as scratch:
                figures[commit]["install"].append(install_only(commit, Path(scratch)))
            with tempfile.TemporaryDirectory(prefix="toolfleet-bench-install-") as scratch:
                figures[commit]["demo"].append(whole_demo(commit, Path(scratch)))
            print(
                f"round {round_ + 1} {commit:>8}: install {figures[commit]['install'][-1]:.1f} s,"
                f" whole demo {figures[commit]['demo'][-1]:.1f} s",
                flush=True,
            )
    result = {}
    for what in ("install", "demo"):
        base = statistics.median(figures[BASELINE][what])
        head = statistics.median(figures["HEAD"][what])
        result[what] = {"baseline_s": base, "locked_s": head, "ratio": head / base}
        print(f"{what:>8}: pip {base:.1f} s, locked {head:.1f} s, ratio {head / base:.2f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "install.json").write_text(
        json.dumps({"rounds": args.rounds, "runs": figures, "median": result}, indent=2)
    )


if __name__ == "__main__":
    main()
