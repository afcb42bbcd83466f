"""Round trip of one prompt: toolfleet vs a bare Celery no-op task vs the tool layer alone.

Run: .venv/bin/python bench/roundtrip.py [--rounds 20 --per-round 20]
All three are measured in one process, interleaved round by round, on one Redis.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness import BENCH, Procs, stats, timed, with_redis

from toolfleet import Fleet
from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool import ToolInstance

PROMPT = "sum(range(10))"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "roundtrip.json")
    args = parser.parse_args()

    with with_redis() as settings, Procs(settings) as procs, Fleet(settings) as fleet:
        procs.toolfleet_worker("python", "bench-python")
        procs.noop_worker("bench-noop")
        procs.wait_toolfleet(fleet, 1)
        noop_app = __import__("noop_app").app
        noop_app.conf.update(broker_url=settings.broker_url, result_backend=settings.broker_url)
        deadline = time.monotonic() + 60
        while not noop_app.control.ping(timeout=0.5):
            assert time.monotonic() < deadline, "no-op worker did not start"
        direct = ToolInstance(BUILTIN_PROFILES["python"])
        direct.start()

        in_tool: list[float] = []

        def via_toolfleet() -> None:
            result = fleet.submit(PROMPT, "python").get(timeout=30)
            assert result.output == "45"
            in_tool.append(result.duration_ms)

        def via_noop() -> None:
            noop_app.send_task("bench.noop", queue="bench.noop").get(timeout=30)

        def via_tool() -> None:
            assert direct.ask(PROMPT).output == "45"

        samples: dict[str, list[float]] = {"toolfleet": [], "celery_noop": [], "tool_direct": []}
        fns = {"toolfleet": via_toolfleet, "celery_noop": via_noop, "tool_direct": via_tool}
        for fn in fns.values():  # warm up connections, imports and the tools
            for _ in range(20):
                fn()
        for _ in range(args.rounds):
            for name, fn in fns.items():
                samples[name] += [timed(fn) for _ in range(args.per_round)]
        direct.close()

    result = {name: stats(values) for name, values in samples.items()}
    result["toolfleet_time_in_tool"] = stats(in_tool)
    baseline = result["celery_noop"]["p50"] + result["tool_direct"]["p50"]
    result["ratio_p50"] = {
        "toolfleet_over_noop_plus_tool": result["toolfleet"]["p50"] / baseline,
        "target": 1.10,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'':24}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name in [*fns, "toolfleet_time_in_tool"]:
        r = result[name]
        print(f"{name:24}{r['p50']:9.2f}{r['p95']:9.2f}{r['p99']:9.2f}")
    ratio = result["ratio_p50"]["toolfleet_over_noop_plus_tool"]
    print(f"toolfleet p50 / (no-op p50 + tool p50) = {ratio:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
