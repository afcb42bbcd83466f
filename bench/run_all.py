"""Run every benchmark, then write bench/RESULTS.md from their figures.

Run: .venv/bin/python bench/run_all.py [--only NAME...] [--skip NAME...] [--no-run]
Each benchmark (roundtrip, health, throughput, startup, memory, persistent, and rollout
when bench/rollout.py exists) runs as its own process, one after another; its output
goes to bench/out/<name>.log and its figures to bench/out/<name>.json. Then RESULTS.md
is rewritten below its marker comment (``MARKER``): a table per benchmark with each
figure, its baseline from the same run, the ratio, and the target with pass/miss.
Everything above the marker (the prose, notes) is kept as it is. ``--no-run`` only
rewrites the tables from the JSON files already in bench/out/.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fleet_bench import OUT, row
from harness import BENCH

from toolfleet.cli.local import redis_server_binary

RESULTS = BENCH / "RESULTS.md"
MARKER = "<!-- run_all.py: everything below this line is generated; edit above it -->"
ORDER = ["roundtrip", "health", "throughput", "startup", "memory", "persistent", "rollout"]
TITLES = {
    "roundtrip": "Round trip of one prompt",
    "health": "Health costs",
    "throughput": "Throughput",
    "startup": "Fleet start-up and shutdown",
    "memory": "Memory per instance and Redis commands per prompt",
    "persistent": "Persistent instance vs a fresh process per prompt",
    "rollout": "DOC_ID rollout (toolfleet map)",
}
NOTES = {
    "throughput": "All prompts submitted at once, then every result fetched; median of "
    "rounds. Ratio: toolfleet / no-op (target >= 0.9). Once the machine's cores are busy, "
    "the rate follows the CPU time per prompt of all processes (workers, tools, Redis, "
    "producer), shown in the last rows; see `bench/PROFILE.md` for where it goes.",
    "startup": "From spawning the processes until all are ready (toolfleet: `ready` in "
    "`Fleet.status()`; bare: answering `app.control.ping`); shutdown: SIGTERM to every "
    "worker until every worker and tool process has exited. Median of repeats. The "
    "same-size rows compare N toolfleet workers with N bare Celery workers: what the "
    "machine's cores allow for N interpreters starting at once.",
    "memory": "VmRSS of the worker process alone (the tool is a child, shown apart). "
    "Commands per prompt: INFO commandstats deltas, idle traffic subtracted.",
    "persistent": "Ratio here is the speed-up: the fresh-process time / the persistent time.",
    "rollout": "Ratio: toolfleet prompts/s / `bash -c`-per-file prompts/s.",
}


def _interruptible() -> None:
    """In a benchmark's process before exec: SIGINT raises KeyboardInterrupt there.

    (A background job inherits SIGINT ignored, and Python then keeps ignoring it.)
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(names: list[str], limit: float) -> dict[str, dict[str, Any]]:
    """Run each benchmark script; its exit status, seconds and whether it wrote figures.

    A benchmark still running after ``limit`` seconds, or when this script is
    interrupted, gets SIGINT (Python's KeyboardInterrupt: its ``with`` blocks stop the
    workers it started), then SIGKILL a minute later.
    """
    runs: dict[str, dict[str, Any]] = {}
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        out = OUT / f"{name}.json"
        started = time.time()
        print(f"== {name} ...", flush=True)
        with open(OUT / f"{name}.log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, str(BENCH / f"{name}.py")],
                cwd=BENCH.parent,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                preexec_fn=_interruptible,
            )
            timer = threading.Timer(limit, proc.send_signal, [signal.SIGINT])
            timer.start()
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    sys.stdout.write("   " + line)
                    log.write(line)
                proc.wait()
            finally:
                timer.cancel()
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        fresh = out.exists() and out.stat().st_mtime >= started
        runs[name] = {
            "status": proc.returncode,
            "seconds": round(time.time() - started, 1),
            "fresh": fresh,
        }
        print(f"== {name}: exit {proc.returncode} in {runs[name]['seconds']} s", flush=True)
    return runs


# ---- tables of the benchmarks whose JSON has no "rows" --------------------------------
def roundtrip_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    tf, noop, tool = data["toolfleet"], data["celery_noop"], data["tool_direct"]
    target = data.get("ratio_p50", {}).get("target", 1.10)
    rows = []
    for q in ("p50", "p95"):
        base = noop[q] + tool[q]
        ratio = tf[q] / base
        rows.append(
            row(
                f"toolfleet submit().get(), {q}",
                tf[q],
                "ms",
                f"no-op task {q} + ToolInstance.ask {q}",
                base,
                target=f"ratio <= {target:g}" if q == "p50" else None,
                passed=ratio <= target if q == "p50" else None,
            )
        )
    rows.append(row("no-op task alone, p50", noop["p50"], "ms"))
    rows.append(row("ToolInstance.ask alone, p50", tool["p50"], "ms"))
    return rows


def health_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for case, values in data.get("redis_commands_per_prompt", {}).items():
        rows.append(
            row(
                f"Redis commands per prompt, {case.replace('_', ' ')}, heartbeat on",
                values["heartbeat_on"],
                "commands",
                "same, heartbeat off",
                values["heartbeat_off"],
            )
        )
    idle = data.get("idle_commands_per_worker_second")
    if idle:
        rows.append(
            row(
                "idle Redis commands per worker-second",
                idle["toolfleet"],
                "commands/s",
                "bare no-op Celery worker",
                idle["celery_noop"],
            )
        )
    restart = data.get("tool_kill_to_ready_s")
    if restart:
        rows.append(
            row(
                "tool SIGKILL -> ready again (new generation), p50",
                restart["toolfleet"]["p50"],
                "s",
                "bare ToolInstance.start(), p50",
                restart["bare_tool_start"]["p50"],
            )
        )
    return rows


def rollout_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    runs = data["runs"]
    rows = []
    pairs = [
        ("toolfleet_1", "bash_c_1", "1 bash worker", "one at a time"),
        ("toolfleet_2", "bash_c_1", "2 bash workers", "one at a time"),
        ("toolfleet_4", "bash_c_4", "4 bash workers", "4 at a time"),
        ("toolfleet_cli_4", "bash_c_4", "`toolfleet map` command, 4 workers", "4 at a time"),
    ]
    for name, base, label, how in pairs:
        if name in runs and base in runs:
            rows.append(
                row(
                    f"{data.get('files', '')} files via {label}".strip(),
                    runs[name]["prompts_per_s"],
                    "prompts/s",
                    f"`bash -c` per file, {how}",
                    runs[base]["prompts_per_s"],
                )
            )
    return rows


BUILDERS: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "roundtrip": roundtrip_rows,
    "health": health_rows,
    "rollout": rollout_rows,
}


# ---- RESULTS.md ------------------------------------------------------------------------
def fmt(value: float | None) -> str:
    if value is None:
        return ""
    size = abs(value)
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| figure | value | baseline (same run) | baseline value | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        unit = r["unit"]
        base = "" if r["baseline"] is None else f"{fmt(r['baseline'])} {unit}"
        verdict = {True: " **pass**", False: " **miss**", None: ""}[r["pass"]]
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        lines.append(
            f"| {r['figure']} | {fmt(r['value'])} {unit} | {r['baseline_label'] or ''} "
            f"| {base} | {ratio} | {r['target'] or '-'}{verdict} |"
        )
    return lines


def versions() -> str:
    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    try:
        server = subprocess.run(
            [redis_server_binary(), "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        redis_version = next((w[2:] for w in server if w.startswith("v=")), "?")
    except Exception:  # the table is still worth writing without it
        redis_version = "?"
    return (
        f"Python {platform.python_version()}, redis-server {redis_version}, "
        f"Celery {version('celery')}, kombu {version('kombu')}, toolfleet {version('toolfleet')}"
    )


def generated(names: list[str], runs: dict[str, dict[str, Any]]) -> list[str]:
    made = [OUT / f"{n}.json" for n in names if (OUT / f"{n}.json").exists()]
    when = datetime.fromtimestamp(max((p.stat().st_mtime for p in made), default=time.time()))
    lines = [
        MARKER,
        "",
        f"## Latest run ({when:%Y-%m-%d %H:%M}, `bench/run_all.py`)",
        "",
        f"Machine: {os.cpu_count()} cores, {versions()}. Every baseline below was measured "
        "in the same run as its figure; the ratio is figure / baseline unless noted. "
        "The machine is shared and noisy: figures move by 20-50 % from run to run, so "
        "compare each figure with its own baseline; the per-round values are in "
        "`bench/out/<name>.json`, the output in `bench/out/<name>.log`.",
        "",
    ]
    verdicts: list[str] = []
    sections: list[str] = []
    for name in names:
        path = OUT / f"{name}.json"
        info = runs.get(name)
        sections += [f"### {TITLES.get(name, name)} (`bench/{name}.py`)", ""]
        earlier = ""
        if info and info["status"] != 0:
            earlier = " (earlier run)"
            sections += [f"**Failed** (exit {info['status']}); see `bench/out/{name}.log`.", ""]
        elif info and not info["fresh"]:
            earlier = " (earlier run)"
            sections += ["**Wrote no new figures** this run.", ""]
        if not path.exists():
            sections += [f"No figures: `bench/out/{name}.json` is missing.", ""]
            continue
        try:
            data = json.loads(path.read_text())
            rows = data["rows"] if "rows" in data else BUILDERS[name](data)
        except (ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
            sections += [f"Unreadable figures ({exc!r}); see `bench/out/{path.name}`.", ""]
            continue
        note = NOTES.get(name, "")
        if info:
            note += f" Ran {info['seconds']:.0f} s."
        if earlier:
            note += " These figures are from an earlier run."
        if note.strip():
            sections += [note.strip(), ""]
        sections += [*table(rows), ""]
        for r in rows:
            if r["pass"] is not None:
                mark = "met" if r["pass"] else "**missed**"
                ratio = f", ratio {r['ratio']:.3f}" if r["ratio"] is not None else ""
                verdicts.append(
                    f"- {TITLES.get(name, name)}{earlier}: {r['figure']}: {r['target']} -> "
                    f"{mark} ({fmt(r['value'])} {r['unit']}{ratio})"
                )
    if verdicts:
        lines += ["Targets:", "", *verdicts, ""]
    return lines + sections


def write_results(names: list[str], runs: dict[str, dict[str, Any]]) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    head = text.split(MARKER, 1)[0].rstrip() + "\n\n"
    RESULTS.write_text(head + "\n".join(generated(names, runs)).rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="run just these benchmarks")
    parser.add_argument("--skip", nargs="+", default=[], help="do not run these")
    parser.add_argument("--no-run", action="store_true", help="only rewrite RESULTS.md")
    parser.add_argument(
        "--limit", type=float, default=600, help="seconds one benchmark may take at most"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGINT, _interrupt)  # even when started in the background
    signal.signal(signal.SIGTERM, _interrupt)

    names = [n for n in ORDER if (BENCH / f"{n}.py").exists()]
    chosen = [n for n in names if (args.only is None or n in args.only) and n not in args.skip]
    started = time.time()
    record = OUT / "run_all.json"  # how the last run went, for --no-run
    try:
        if args.no_run:
            runs = json.loads(record.read_text()) if record.exists() else {}
        else:
            runs = run(chosen, args.limit)
            earlier = json.loads(record.read_text()) if record.exists() else {}
            record.write_text(json.dumps({**earlier, **runs}, indent=2) + "\n")
    except KeyboardInterrupt:
        raise SystemExit("interrupted; RESULTS.md left as it was") from None
    write_results(names, runs)
    print(f"wrote {RESULTS} ({time.time() - started:.0f} s)")
    print("\n".join(line for line in RESULTS.read_text().split(MARKER, 1)[1].splitlines()[:40]))
    if not args.no_run and any(info["status"] != 0 for info in runs.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
