"""Verified changes on the real aider: rollout time with a check after each item against
without, and the merge queue's cost per change against an aider item's time.

Run: .venv/bin/python bench/verified.py [--files 40] [--rounds 2]
Needs the real aider in .aider-venv (scripts/aider-venv). One process, one private Redis,
one fake model server (tests/programs/fake_openai.py), 3 aider workers in worktrees of a
repository of ``--files`` modules with a pytest suite over them:

1. rounds, interleaved: the DOC_ID rollout (``/add``, the request) without a check, then
   with ``--check "pytest"`` (the suite in each item's worktree, confined like aider).
   Figure: checked / unchecked wall time, per round and median.
2. the merge queue, as ``map --apply`` runs it: during each checked rollout its ready
   changes land on a branch of their own as they come, in trains (those that came
   during the last landing go together: merged onto the tip, the suite run once on the
   merged tree, the branch moved once). Figure: the queue's busy seconds a change, and
   that over an aider item's time (an instance's seconds an item in the unchecked run:
   wall time x workers / items). Then the last run's changes landed one at a time
   (trains of one) on another branch: the cost without trains.

Figures go to bench/out/verified.json and the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import BENCH, Procs, with_redis

from toolfleet import Fleet
from toolfleet.client.applier import Applier
from toolfleet.client.bulk import run_map
from toolfleet.client.changes import ApplyResult
from toolfleet.client.items import expand_steps
from toolfleet.client.mergequeue import MergeQueue
from toolfleet.client.verify import CheckSpec

ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from tests.programs import fake_openai  # noqa: E402

AIDER = ROOT / ".aider-venv" / "bin" / "aider"
STEPS = ["/add {path}", 'Add a "# DOC_ID: {stem}" header line to {path}']
#: plugins not loaded: the suite needs none, and the venv's (xdist, celery, playwright)
#: would cost seconds a run
SUITE = (
    f"PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -x -p no:cacheprovider tests"
)
WORKERS = 3
TEST_FILE = """import importlib

import pytest


@pytest.mark.parametrize("number", range({count}))
def test_value(number: int) -> None:
    assert importlib.import_module(f"src.m{{number:02d}}").VALUE == number
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout


def make_repo(root: Path, files: int) -> list[str]:
    """Modules src/mNN.py with a VALUE each, and a suite asserting them."""
    (root / "src").mkdir(parents=True)
    (root / "tests").mkdir()
    names = []
    for i in range(files):
        name = f"src/m{i:02d}.py"
        (root / name).write_text(f'"""Module {i}."""\n\nVALUE = {i}\n')
        names.append(name)
    (root / "src" / "__init__.py").write_text("")
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_values.py").write_text(TEST_FILE.format(count=files))
    git(root, "init", "--quiet", "-b", "main")
    git(root, "config", "user.email", "bench@example.com")
    git(root, "config", "user.name", "bench")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "tree")
    return names


class TimedQueue(MergeQueue):
    """A merge queue that counts the seconds it spends landing."""

    busy = 0.0

    def land(self, changes: list[str]) -> ApplyResult:
        started = time.perf_counter()
        try:
            return super().land(changes)
        finally:
            self.busy += time.perf_counter() - started


def rollout(
    fleet: Fleet, names: list[str], check: CheckSpec | None, queue: MergeQueue | None = None
) -> dict[str, object]:
    items = expand_steps(STEPS, names)
    applier = None if queue is None else Applier(fleet.changes, merge_queue=queue)
    started = time.perf_counter()
    outcomes = []
    for outcome in run_map(
        fleet, items, profile="aider-wt", in_flight=WORKERS, retries=1, check=check
    ):
        outcomes.append(outcome)
        if applier is not None and outcome.ok and outcome.changes is not None:
            applier.add(outcome.changes.id)
    elapsed = time.perf_counter() - started
    landed = applier.close() if applier is not None else None
    ok = [o for o in outcomes if o.ok]
    ready = [o.changes.id for o in ok if o.changes is not None and o.changes.state == "ready"]
    checks = [o.check.duration_ms / 1000 for o in ok if o.check is not None]
    return {
        "seconds": round(elapsed, 2),
        "ok": len(ok),
        "failed": [f"{o.key}: {o.error_type} {o.error}" for o in outcomes if not o.ok],
        "ready": ready,
        "check_median_s": statistics.median(checks) if checks else None,
        "landed": None if landed is None else len(landed.applied),
        "not_landed": None if landed is None else len(landed.redo) + len(landed.refused),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "verified.json")
    args = parser.parse_args()
    if not AIDER.is_file():
        sys.exit("no aider in .aider-venv: run scripts/aider-venv first")
    base = Path(tempfile.mkdtemp(prefix="toolfleet-verified-bench-"))
    server, thread = fake_openai.serve(0)
    env = {
        **fake_openai.aider_env(server.port, base),
        "PATH": f"{AIDER.parent}{os.pathsep}{os.environ['PATH']}",
    }
    repo = base / "repo"
    names = make_repo(repo, args.files)
    profiles = base / "profiles.toml"
    profiles.write_text(
        f'[profiles.aider-wt]\nextends = "aider"\nworkspace = "worktree"\nrepo = "{repo}"\n'
        'sandbox = "strict"\n'
    )
    check = CheckSpec(SUITE, timeout=300)
    runs: list[dict[str, object]] = []
    try:
        with with_redis() as settings:
            settings = settings.model_copy(update={"profiles": profiles})
            with Procs(settings) as procs, Fleet(settings) as fleet:
                procs.extra_env = {**env, "TOOLFLEET_PROFILES": str(profiles)}
                for i in range(WORKERS):
                    procs.toolfleet_worker("aider-wt", f"aider{i + 1}")
                procs.wait_toolfleet(fleet, WORKERS, timeout=300)
                rollout(fleet, names[:WORKERS], None)  # warm: every instance answered once
                queues = []
                for round_ in range(args.rounds):
                    plain = rollout(fleet, names, None)
                    git(repo, "branch", f"landing{round_}", "main")
                    queue = TimedQueue(
                        fleet.changes, repo, f"landing{round_}", check=SUITE, check_timeout=300
                    )
                    checked = rollout(fleet, names, check, queue)
                    checked["queue_busy_s"] = round(queue.busy, 2)
                    queues.append(queue.busy / max(1, int(checked["landed"] or 0)))
                    runs.append({"unchecked": plain, "checked": checked})
                    print(
                        f"round: unchecked {plain['seconds']} s, checked {checked['seconds']} s"
                        f" (ratio {float(checked['seconds']) / float(plain['seconds']):.3f})",
                        flush=True,
                    )
                ready = list(runs[-1]["checked"]["ready"])  # type: ignore[index]
                git(repo, "branch", "serial", "main")
                serial = MergeQueue(fleet.changes, repo, "serial", check=SUITE, check_timeout=300)
                started = time.perf_counter()
                alone = [serial.land([change]) for change in ready]
                serial_s = time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    ratios = [
        float(r["checked"]["seconds"]) / float(r["unchecked"]["seconds"])  # type: ignore[index]
        for r in runs
    ]
    item_s = statistics.median(
        float(r["unchecked"]["seconds"]) * WORKERS / args.files  # type: ignore[index]
        for r in runs
    )
    per_change = statistics.median(queues)
    per_change_serial = serial_s / max(1, len(ready))
    figures = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "files": args.files,
        "workers": WORKERS,
        "checked_over_unchecked": [round(x, 3) for x in ratios],
        "checked_over_unchecked_median": round(statistics.median(ratios), 3),
        "aider_item_s": round(item_s, 3),
        "queue_s_per_change_trains": round(per_change, 3),
        "queue_over_item_trains": round(per_change / item_s, 3),
        "serial_changes": len(ready),
        "serial_applied": sum(len(a.applied) for a in alone),
        "queue_s_per_change_serial": round(per_change_serial, 3),
        "queue_over_item_serial": round(per_change_serial / item_s, 3),
        "runs": [
            {k: {kk: vv for kk, vv in v.items() if kk != "ready"} for k, v in r.items()}  # type: ignore[attr-defined]
            for r in runs
        ],
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(json.dumps({k: v for k, v in figures.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
