"""What ``sandbox = "strict"`` costs a tool: its start-up and a prompt's round trip
through it (``strict``, and ``auto``, the built-ins' default), against the same profile
with ``sandbox = "none"``, alternated in one process.

Run: .venv/bin/python bench/sandbox.py [--profile python] [--starts 10] [--prompts 300]
The round trip is the tool's own (``ToolInstance.ask``: typed, answered, detected): the
part a sandbox can change; Celery's share of a prompt is the same either way. Goals from
the issue: round trip +<= 5 %, start-up +<= 50 ms. Figures: bench/out/sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from toolfleet.profiles import BUILTIN_PROFILES, Profile
from toolfleet.tool.instance import ToolInstance
from toolfleet.tool.sandbox import sandbox_support

OUT = Path(__file__).resolve().parent / "out"
PROMPTS = {"python": "1 + 1", "bash": "echo 2", "sqlite3": "select 2;", "node": "1 + 1"}


def started(profile: Profile, cwd: str) -> tuple[ToolInstance, float]:
    tool = ToolInstance(profile, cwd=cwd)
    began = time.perf_counter()
    tool.start()
    return tool, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="python", choices=sorted(PROMPTS))
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=300)
    args = parser.parse_args()
    binary, why = sandbox_support()
    if binary is None:
        raise SystemExit(f"this host cannot confine: {why}")
    base = BUILTIN_PROFILES[args.profile]
    # the same HOME for both (strict gives its instance folder): what is measured is the
    # sandbox, not a history file in the worker's HOME
    env = {**base.env, "HOME": "{instance_dir}"}
    order = ("none", "strict", "auto")
    kinds = {k: base.model_copy(update={"sandbox": k, "env": env}) for k in order}
    starts: dict[str, list[float]] = {kind: [] for kind in kinds}
    trips: dict[str, list[float]] = {kind: [] for kind in kinds}
    text = PROMPTS[args.profile]
    with tempfile.TemporaryDirectory() as cwd:
        for i in range(args.starts):
            for kind in order if i % 2 == 0 else order[::-1]:
                tool, took = started(kinds[kind], cwd)
                assert tool.sandbox == kind, tool.sandbox
                starts[kind].append(took)
                for _ in range(args.prompts // args.starts):
                    began = time.perf_counter()
                    tool.ask(text)
                    trips[kind].append(time.perf_counter() - began)
                tool.close()
    result: dict[str, dict[str, float]] = {}
    for what, figures in (("start", starts), ("round_trip", trips)):
        none = statistics.median(figures["none"]) * 1000
        result[what] = {"none_ms": none}
        for kind in order[1:]:
            ms = statistics.median(figures[kind]) * 1000
            result[what] |= {f"{kind}_ms": ms, f"{kind}_ratio": ms / none}
            print(
                f"{args.profile} {what:>10}: none {none:.2f} ms, {kind} {ms:.2f} ms, "
                f"+{ms - none:.2f} ms, ratio {ms / none:.3f}"
            )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sandbox.json").write_text(json.dumps({"profile": args.profile, **result}, indent=2))


if __name__ == "__main__":
    main()
