"""A persistent instance vs a fresh tool process per prompt (python, and a slow-starting aider).

Run: .venv/bin/python bench/persistent.py [--rounds 5]
python: ``fleet.submit("sum(range(10))").get()`` through one toolfleet python worker (and,
for reference, ``ToolInstance.ask`` on one persistent instance in-process) vs
``subprocess.run(["python3", "-c", "print(sum(range(10)))"])`` per prompt (``python3`` as
found on PATH, and the interpreter it resolves to, in case PATH holds a shim).
aider: the stand-in tests/programs/fake_aider.py (FAKE_AIDER_START_DELAY=1.0,
FAKE_AIDER_REPLY_SECONDS=0.05) behind the built-in ``aider`` profile, driven through the
tool layer: one persistent ``ToolInstance`` vs a fresh ``ToolInstance`` per prompt
(start, ask, close). The kinds are interleaved round by round; figures are per prompt,
in bench/out/persistent.json.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from fleet_bench import exit_on_sigterm, print_rows, row, write_json
from harness import BENCH, Procs, stats, timed, with_redis

from toolfleet import Fleet
from toolfleet.profiles import BUILTIN_PROFILES, Profile
from toolfleet.tool import ToolInstance

PROMPT = "sum(range(10))"
FAKE_AIDER = BENCH.parent / "tests" / "programs" / "fake_aider.py"


def aider_profile() -> Profile:
    """The built-in aider profile, running the stand-in instead of aider."""
    aider = BUILTIN_PROFILES["aider"]
    return aider.model_copy(
        update={
            "argv": [sys.executable, str(FAKE_AIDER), *aider.argv[1:]],
            "env": {
                **aider.env,
                "FAKE_AIDER_START_DELAY": "1.0",
                "FAKE_AIDER_REPLY_SECONDS": "0.05",
            },
        }
    )


def real_python3() -> str:
    """The interpreter ``python3`` on PATH runs in the end (past a pyenv shim, say)."""
    argv = ["python3", "-c", "import sys; print(sys.executable)"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def interleave(
    fns: dict[str, tuple[Callable[[], object], int]], rounds: int
) -> dict[str, list[float]]:
    """Milliseconds per call of each fn, ``count`` calls per round, kinds interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, (fn, count) in fns.items():
            samples[name] += [timed(fn) for _ in range(count)]
    return samples


def python_kinds(rounds: int) -> dict[str, list[float]]:
    with with_redis() as settings, Procs(settings) as procs, Fleet(settings) as fleet:
        procs.toolfleet_worker("python", "persist-python")
        procs.wait_toolfleet(fleet, 1)
        direct = ToolInstance(BUILTIN_PROFILES["python"])
        try:
            direct.start()

            def via_toolfleet() -> None:
                assert fleet.submit(PROMPT, "python").get(timeout=30).output == "45"

            def via_tool() -> None:
                assert direct.ask(PROMPT).output == "45"

            def fresh(python: str) -> Callable[[], None]:
                def run() -> None:
                    argv = [python, "-c", f"print({PROMPT})"]
                    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
                    assert out == "45\n"

                return run

            fns = {
                "toolfleet": (via_toolfleet, 20),
                "tool_direct": (via_tool, 20),
                "fresh_process": (fresh("python3"), 10),
                "fresh_process_resolved": (fresh(real_python3()), 10),
            }
            interleave(fns, 1)  # warm-up
            return interleave(fns, rounds)
        finally:
            direct.close()


def aider_kinds(rounds: int) -> tuple[dict[str, list[float]], float]:
    profile = aider_profile()
    work = tempfile.mkdtemp(prefix="toolfleet-bench-aider-")  # the stand-in's history files
    persistent = ToolInstance(profile, cwd=work)
    try:
        start_ms = timed(persistent.start)
        n = 0

        def check(text: str) -> None:
            assert text.startswith("Reply #") and "hello" in text, text

        def via_persistent() -> None:
            check(persistent.ask("hello").output)

        latency: list[float] = []
        closing: list[float] = []

        def via_fresh() -> None:
            nonlocal n
            n += 1
            inst = ToolInstance(profile, cwd=work)
            try:
                t0 = time.perf_counter()
                inst.start()
                check(inst.ask("hello").output)
                t1 = time.perf_counter()
                inst.close()
                closing.append((time.perf_counter() - t1) * 1000)
                latency.append((t1 - t0) * 1000)
            finally:
                inst.close()
                shutil.rmtree(inst.instance_dir, ignore_errors=True)

        fns = {"persistent": (via_persistent, 5), "fresh_instance": (via_fresh, 2)}
        samples = interleave(fns, rounds)
        samples["fresh_start_and_answer"] = latency
        samples["fresh_close"] = closing
        return samples, start_ms
    finally:
        persistent.close()
        shutil.rmtree(persistent.instance_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def speedup(figure: str, value: float, baseline_label: str, baseline: float) -> dict[str, Any]:
    """A row whose ratio is the speed-up: the fresh-process time over the persistent one."""
    return row(figure, value, "ms", baseline_label, baseline, ratio=baseline / value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    exit_on_sigterm()

    py = python_kinds(args.rounds)
    aider, aider_start_ms = aider_kinds(args.rounds)
    py_stats = {k: stats(v) for k, v in py.items()}
    aider_stats = {k: stats(v) for k, v in aider.items()}
    fresh_py = py_stats["fresh_process"]["p50"]
    fresh_real = py_stats["fresh_process_resolved"]["p50"]
    fresh_aider = aider_stats["fresh_instance"]["p50"]
    toolfleet, direct = py_stats["toolfleet"]["p50"], py_stats["tool_direct"]["p50"]
    persistent = aider_stats["persistent"]["p50"]
    rows = [
        speedup(
            "python: toolfleet submit().get(), p50",
            toolfleet,
            f"python3 -c per prompt ({shutil.which('python3')}), p50",
            fresh_py,
        ),
        speedup(
            "python: toolfleet submit().get(), p50",
            toolfleet,
            f"{real_python3()} -c per prompt, p50",
            fresh_real,
        ),
        speedup(
            "python: persistent ToolInstance.ask (no Celery), p50",
            direct,
            f"{real_python3()} -c per prompt, p50",
            fresh_real,
        ),
        speedup(
            "aider stand-in: persistent ToolInstance.ask, p50",
            persistent,
            "fresh ToolInstance per prompt (start+ask+close), p50",
            fresh_aider,
        ),
        speedup(
            "aider stand-in: persistent ToolInstance.ask, p50",
            persistent,
            "fresh ToolInstance, start+ask only, p50",
            aider_stats["fresh_start_and_answer"]["p50"],
        ),
    ]
    write_json(
        "persistent",
        {
            "rounds": args.rounds,
            "ratio_is": "speed-up: baseline (fresh) time / persistent time",
            "python3_on_path": shutil.which("python3"),
            "python3_resolved": real_python3(),
            "python_ms": py_stats,
            "aider_ms": aider_stats,
            "aider_persistent_start_ms": aider_start_ms,
            "rows": rows,
        },
    )
    print_rows("persistent instance vs fresh process per prompt (ratio = speed-up)", rows)


if __name__ == "__main__":
    main()
