"""The 218-file DOC_ID rollout on the real aider: 3 aider workers in worktree workspaces
vs ``aider --message ... FILE`` started once per file, both against the scripted model.

Run: .venv/bin/python bench/aider_rollout.py [--files 218] [--baseline-files 24]
Needs the real aider in .aider-venv (scripts/aider-venv). Everything runs in one process
on one private Redis and one fake model server (tests/programs/fake_openai.py):

1. toolfleet: a git repository of the example's tree; 3 workers of a worktree profile
   extending the built-in aider one; ``run_map`` with the example's three steps
   (``/add``, the request, ``/drop``), each ok item's change applied to the repository's
   branch as it completes (what ``map --apply`` does). Figures: items/s, time to the
   first applied change, and the tree checked (ok / missing / duplicated / conflicts).
2. baseline: in a fresh copy of the repository, ``aider --message REQUEST FILE`` (same
   flags and model as the profile) once per file, one after another (two aider
   processes in one checkout would edit one tree), over the first ``--baseline-files``
   files: items/s; the per-file cost does not depend on how many files there are.
3. worktree cost: the worker's own reset and commit of an instance worktree of the
   218-file repository, timed in this process per item, as a share of an item's time.

Figures go to bench/out/aider_rollout.json and the output.
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
from pathlib import Path

from harness import BENCH, Procs, with_redis

from toolfleet import Fleet
from toolfleet.client.bulk import run_map
from toolfleet.client.items import expand_steps
from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.workers.workspace import Worktree

ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from tests.programs import fake_openai  # noqa: E402

_tree = runpy.run_path(str(ROOT / "examples" / "doc_id_rollout" / "make_tree.py"))
make_tree: Callable[[Path, int], list[Path]] = _tree["make_tree"]
check_tree: Callable[[Path], dict[str, list[str]]] = _tree["check_tree"]

AIDER = ROOT / ".aider-venv" / "bin" / "aider"
REQUEST = 'Add a "# DOC_ID: {stem}" header line to {path}'
STEPS = ["/add {path}", REQUEST, "/drop {path}"]
WORKERS = 3


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def make_repo(root: Path, files: int) -> list[str]:
    """The example's tree as a git repository; its files relative to the root."""
    make_tree(root, files)
    git(root, "init", "--quiet", "-b", "main")
    git(root, "config", "user.email", "bench@example.com")
    git(root, "config", "user.name", "bench")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "tree")
    return sorted(str(p.relative_to(root)) for p in (root / "src").rglob("*.py"))


def via_toolfleet(procs: Procs, fleet: Fleet, repo: Path, names: list[str]) -> dict[str, object]:
    """The rollout through the fleet, applying each change as its item completes."""
    items = expand_steps(STEPS, names)
    applied = conflicts = 0
    first_applied: float | None = None
    failed: list[str] = []
    start = time.perf_counter()
    for outcome in run_map(fleet, items, profile="aider-wt", in_flight=WORKERS, retries=1):
        if not outcome.ok:
            failed.append(f"{outcome.key}: {outcome.error_type} {outcome.error}")
            continue
        if outcome.changes is None or outcome.changes.commit is None:
            failed.append(f"{outcome.key}: no change")
            continue
        result = fleet.changes.apply([outcome.changes.id], repo=repo)
        applied += len(result.applied)
        conflicts += len(result.conflicts)
        if result.applied and first_applied is None:
            first_applied = time.perf_counter() - start
    elapsed = time.perf_counter() - start
    verdicts = {k: len(v) for k, v in check_tree(repo).items()}
    return {
        "seconds": round(elapsed, 2),
        "items_per_s": len(names) / elapsed,
        "first_applied_s": first_applied,
        "applied": applied,
        "conflicts": conflicts,
        "failed": failed,
        "check": verdicts,
    }


def via_aider_message(repo: Path, names: list[str], env: dict[str, str]) -> dict[str, object]:
    """``aider --message REQUEST FILE`` once per file, one after another."""
    profile = BUILTIN_PROFILES["aider"]
    flags = [a for a in profile.argv[1:] if a != "--no-fancy-input"]
    base_env = {**env, "HOME": str(repo.parent / "home")}
    Path(base_env["HOME"]).mkdir(exist_ok=True)
    per_file = []
    for name in names:
        message = REQUEST.format(stem=Path(name).stem, path=name)
        started = time.perf_counter()
        subprocess.run(
            [str(AIDER), *flags, "--no-gitignore", "--message", message, name],
            cwd=repo,
            env=base_env,
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        per_file.append(time.perf_counter() - started)
    edited = sum((repo / n).read_text().startswith(f"# DOC_ID: {Path(n).stem}\n") for n in names)
    return {
        "files": len(names),
        "seconds": round(sum(per_file), 2),
        "items_per_s": len(names) / sum(per_file),
        "median_per_file_s": statistics.median(per_file),
        "edited": edited,
    }


def worktree_costs(repo: Path, names: list[str], rounds: int = 20) -> dict[str, float]:
    """Seconds a worker spends on its worktree per item (reset before, commit after)."""
    profile = BUILTIN_PROFILES["aider"].model_copy(update={"repo": str(repo)})
    wt = Worktree(profile, "bench@host")
    started = time.perf_counter()
    wt.prepare()
    create = time.perf_counter() - started
    resets, commits = [], []
    try:
        for i in range(rounds):
            started = time.perf_counter()
            wt.reset()
            resets.append(time.perf_counter() - started)
            path = wt.path / names[i % len(names)]
            path.write_text("# DOC_ID: x\n" + path.read_text())
            started = time.perf_counter()
            wt.commit(f"bench{i}")
            commits.append(time.perf_counter() - started)
    finally:
        wt.remove()
        for i in range(rounds):
            git(repo, "branch", "--quiet", "-D", f"toolfleet/changes/bench{i}")
    return {
        "create_s": create,
        "reset_s": statistics.median(resets),
        "commit_s": statistics.median(commits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=218)
    parser.add_argument("--baseline-files", type=int, default=24)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "aider_rollout.json")
    args = parser.parse_args()
    if not AIDER.is_file():
        sys.exit("no aider in .aider-venv: run scripts/aider-venv first")

    base = Path(tempfile.mkdtemp(prefix="toolfleet-aider-bench-"))
    server, thread = fake_openai.serve(0)
    env = {
        **fake_openai.aider_env(server.port, base),
        "PATH": f"{AIDER.parent}{os.pathsep}{os.environ['PATH']}",
    }
    try:
        repo = base / "repo"
        names = make_repo(repo, args.files)
        profiles = base / "profiles.toml"
        profiles.write_text(
            f'[profiles.aider-wt]\nextends = "aider"\nworkspace = "worktree"\nrepo = "{repo}"\n'
        )
        costs = worktree_costs(repo, names)
        with with_redis() as settings:
            settings = settings.model_copy(update={"profiles": profiles})
            with Procs(settings) as procs, Fleet(settings) as fleet:
                procs.extra_env = {**env, "TOOLFLEET_PROFILES": str(profiles)}
                for i in range(WORKERS):
                    procs.toolfleet_worker("aider-wt", f"aider{i + 1}")
                procs.wait_toolfleet(fleet, WORKERS, timeout=300)
                fleet_run = via_toolfleet(procs, fleet, repo, names)
        baseline_repo = base / "baseline"
        baseline_names = make_repo(baseline_repo, args.files)[: args.baseline_files]
        baseline = via_aider_message(baseline_repo, baseline_names, env)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        shutil.rmtree(base, ignore_errors=True)

    # each worker runs one item at a time: an item lasts WORKERS / (items/s) seconds
    item_s = WORKERS / float(fleet_run["items_per_s"])  # type: ignore[arg-type]
    per_item = costs["reset_s"] + costs["commit_s"]
    ratio = float(fleet_run["items_per_s"]) / float(baseline["items_per_s"])  # type: ignore[arg-type]
    result = {
        "files": args.files,
        "workers": WORKERS,
        "steps": STEPS,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "toolfleet": fleet_run,
        "aider_message": baseline,
        "ratio_items_per_s": ratio,
        "worktree": {**costs, "item_s": item_s, "per_item_s": per_item, "share": per_item / item_s},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
