"""The DOC_ID rollout (218 small files): toolfleet map on 1, 2 and 4 bash workers, vs a
fresh ``bash -c`` per file (what one would script without toolfleet), and the ceiling of
this machine: the files' commands split over 1 or 2 bash processes run as plain scripts
(no queue, no terminal, no framing: only each file's own ``sed``).

Run: .venv/bin/python bench/rollout.py [--rounds 3]
All in one run on one private Redis. Workers are added 1 -> 2 -> 4; in each phase the
toolfleet run and the ``bash -c`` baselines are interleaved round by round. Every run
edits a fresh copy of the tree, and every run's result is checked (each module gets
exactly one header). Figures go to bench/out/rollout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import BENCH, Procs, with_redis

from toolfleet import Fleet
from toolfleet.client.bulk import run_map
from toolfleet.client.items import MapItem, expand_template

_tree = runpy.run_path(str(BENCH.parent / "examples" / "doc_id_rollout" / "make_tree.py"))
make_tree: Callable[[Path, int], list[Path]] = _tree["make_tree"]
check_tree: Callable[[Path], dict[str, list[str]]] = _tree["check_tree"]

TEMPLATE = 'sed -i "1i # DOC_ID: {stem}" {path}'
FILES = 218


class Trees:
    """Fresh copies of the generated tree, one per run."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="toolfleet-rollout-"))
        self.pristine = self.base / "pristine"
        make_tree(self.pristine, FILES)
        self.count = 0

    def fresh(self) -> tuple[Path, list[MapItem]]:
        self.count += 1
        root = self.base / f"run{self.count}"
        shutil.copytree(self.pristine, root)
        paths = sorted((root / "src").rglob("*.py"))
        return root, expand_template(TEMPLATE, [str(p) for p in paths])

    def check(self, root: Path) -> None:
        verdicts = check_tree(root)
        bad = {k: v[:3] for k, v in verdicts.items() if k != "ok" and v}
        assert not bad and len(verdicts["ok"]) == FILES, bad
        shutil.rmtree(root)

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def via_toolfleet(fleet: Fleet, items: list[MapItem], in_flight: int) -> float:
    """Seconds for the whole rollout through ``run_map``."""
    start = time.perf_counter()
    outcomes = list(run_map(fleet, items, profile="bash", in_flight=in_flight))
    elapsed = time.perf_counter() - start
    assert len(outcomes) == FILES and all(o.ok for o in outcomes)
    return elapsed


def via_cli(env: dict[str, str], items: list[MapItem], in_flight: int) -> float:
    """Seconds for ``toolfleet map`` as a command, interpreter start-up included."""
    argv = [
        sys.executable,
        "-c",
        "from toolfleet.cli.map import map_command; map_command(prog_name='toolfleet map')",
        "--profile",
        "bash",
        "--template",
        TEMPLATE,
        "--in-flight",
        str(in_flight),
        "--json",
        *[it.key for it in items],
    ]
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == FILES
    return elapsed


def via_bash_c(items: list[MapItem], parallel: int) -> float:
    """Seconds for one ``bash -c TEXT`` process per item, ``parallel`` at a time."""

    def one(item: MapItem) -> None:
        subprocess.run(["bash", "-c", item.text], check=True)

    start = time.perf_counter()
    if parallel == 1:
        for item in items:
            one(item)
    else:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, items))
    return time.perf_counter() - start


def via_bash_scripts(items: list[MapItem], parallel: int) -> float:
    """Seconds for the items' texts split over ``parallel`` bash processes, each running
    its share as one script: the cost of the commands alone, what no runner beats."""
    shares = ["\n".join(item.text for item in items[i::parallel]) + "\n" for i in range(parallel)]
    start = time.perf_counter()
    procs = [subprocess.Popen(["bash", "-c", share]) for share in shares]
    assert all(proc.wait() == 0 for proc in procs)
    return time.perf_counter() - start


def summary(seconds: list[float]) -> dict[str, object]:
    rates = [FILES / s for s in seconds]
    return {
        "prompts_per_s": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "seconds": [round(s, 4) for s in seconds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each kind per phase")
    parser.add_argument("--in-flight", type=int, default=8, help="map's --in-flight")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "rollout.json")
    args = parser.parse_args()

    trees = Trees()
    seconds: dict[str, list[float]] = {}

    def measure(name: str, run: Callable[[list[MapItem]], float]) -> None:
        root, items = trees.fresh()
        elapsed = run(items)
        trees.check(root)
        seconds.setdefault(name, []).append(elapsed)

    try:
        with with_redis() as settings, Procs(settings) as procs, Fleet(settings) as fleet:
            started = 0
            for workers in (1, 2, 4):
                while started < workers:
                    started += 1
                    procs.toolfleet_worker("bash", f"bash{started}")
                procs.wait_toolfleet(fleet, workers)
                root, items = trees.fresh()  # warm-up: connections, imports, the tools
                via_toolfleet(fleet, items, args.in_flight)
                trees.check(root)
                for _ in range(args.rounds):
                    measure(
                        f"toolfleet_{workers}",
                        lambda items: via_toolfleet(fleet, items, args.in_flight),
                    )
                    if workers == 4:
                        measure(
                            "toolfleet_cli_4",
                            lambda items: via_cli(procs.env(), items, args.in_flight),
                        )
                    measure("bash_c_1", lambda items: via_bash_c(items, 1))
                    measure("bash_c_4", lambda items: via_bash_c(items, 4))
                    for share in (1, 2):
                        measure(
                            f"scripts_{share}", lambda items, n=share: via_bash_scripts(items, n)
                        )
    finally:
        trees.close()

    labels = {
        "toolfleet_1": "toolfleet map (run_map), 1 bash worker",
        "toolfleet_2": "toolfleet map (run_map), 2 bash workers",
        "toolfleet_4": "toolfleet map (run_map), 4 bash workers",
        "toolfleet_cli_4": "toolfleet map command, 4 workers, incl. start-up",
        "bash_c_1": "bash -c per file, one at a time",
        "bash_c_4": "bash -c per file, 4 at a time",
        "scripts_1": "ceiling: the commands as 1 bash script",
        "scripts_2": "ceiling: the commands as 2 bash scripts at once",
    }
    rate = {name: statistics.median(FILES / s for s in values) for name, values in seconds.items()}
    ratios = {
        f"{name}_over_bash_c_1": rate[name] / rate["bash_c_1"]
        for name in ("toolfleet_1", "toolfleet_2", "toolfleet_4", "scripts_1", "scripts_2")
    }
    ratios["toolfleet_2_over_scripts_2"] = rate["toolfleet_2"] / rate["scripts_2"]
    result: dict[str, object] = {
        "files": FILES,
        "template": TEMPLATE,
        "in_flight": args.in_flight,
        "rounds_per_phase": args.rounds,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "runs": {name: summary(values) for name, values in seconds.items()},
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"rollout of {FILES} files (in_flight {args.in_flight}; median of runs)")
    print(f"{'':50}{'prompts/s':>10}{'min':>8}{'max':>8}{'runs':>6}")
    for name, label in labels.items():
        r = summary(seconds[name])
        print(
            f"{label:50}{r['prompts_per_s']:10.1f}{r['min']:8.1f}{r['max']:8.1f}"
            f"{len(seconds[name]):6d}"
        )
    for name, value in ratios.items():
        print(f"{name:50}{value:10.2f}")


if __name__ == "__main__":
    main()
