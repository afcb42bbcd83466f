"""Live prompts: cancel latency, and what streaming costs in Redis commands.

Run: .venv/bin/python bench/live.py [--rounds 10]
One private Redis, real python workers:

1. Cancel latency: a running ``time.sleep(30)`` prompt, ``handle.cancel()``, until its
   ``get`` raises PromptCancelled; p50 over ``--rounds``, against the profile's interrupt
   grace (the time a tool that ignores the interrupt is given before its restart).
2. Redis commands per fast prompt (``1 + 1``), streaming on (the default 100 ms) vs
   streaming off (``TOOLFLEET_STREAM_INTERVAL=0``): the same worker setup, one after
   the other; idle traffic over the same time is subtracted (as bench/health.py does).
3. Streaming's extra commands per second of a long prompt (a line every 50 ms for 5 s):
   commands during it with streaming on minus off, over its seconds.

Figures go to bench/out/live.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import redis
from harness import BENCH, Procs, with_redis
from health import commands_per_call

from toolfleet import Fleet, PromptCancelled, Settings
from toolfleet.profiles import BUILTIN_PROFILES

LONG = "import time\nfor i in range(100):\n    print(i)\n    time.sleep(0.05)"


def running(fleet: Fleet, prompt_id: str) -> None:
    deadline = time.monotonic() + 30
    while not any(h.prompt_id == prompt_id for h in fleet.status("python")):
        assert time.monotonic() < deadline, "the prompt never ran"
        time.sleep(0.02)


def cancel_latencies(fleet: Fleet, rounds: int) -> list[float]:
    seconds = []
    for _ in range(rounds):
        handle = fleet.submit("import time; time.sleep(30)", "python")
        running(fleet, handle.id)
        started = time.perf_counter()
        handle.cancel()
        try:
            handle.get(timeout=60)
        except PromptCancelled:
            seconds.append(time.perf_counter() - started)
        else:
            raise AssertionError("not cancelled")
        assert fleet.submit("1 + 1", "python").get(timeout=30).output == "2"
    return seconds


def commands(settings: Settings, stream_interval: float, text: str, n: int) -> float:
    """Redis commands per prompt ``text`` on one python worker, idle traffic subtracted."""
    worker_settings = settings.model_copy(update={"stream_interval": stream_interval})
    with Procs(worker_settings) as procs, Fleet(settings) as fleet:
        client = redis.Redis.from_url(settings.broker_url)
        procs.toolfleet_worker("python", f"cmds-{stream_interval}")
        procs.wait_toolfleet(fleet, 1)
        for _ in range(10):
            fleet.submit("0", "python").get(timeout=30)
        per = commands_per_call(client, lambda: fleet.submit(text, "python").get(timeout=60), n)
        client.close()
        return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "live.json")
    args = parser.parse_args()
    grace = BUILTIN_PROFILES["python"].grace
    with with_redis() as settings:
        with Procs(settings) as procs, Fleet(settings) as fleet:
            procs.toolfleet_worker("python", "cancel1")
            procs.wait_toolfleet(fleet, 1)
            latencies = cancel_latencies(fleet, args.rounds)
        fast_on = commands(settings, 0.1, "1 + 1", 200)
        fast_off = commands(settings, 0.0, "1 + 1", 200)
        long_on = commands(settings, 0.1, LONG, 3)
        long_off = commands(settings, 0.0, LONG, 3)
    long_seconds = 100 * 0.05
    result = {
        "cancel_latency_s": {
            "p50": statistics.median(latencies),
            "max": max(latencies),
            "rounds": [round(s, 4) for s in latencies],
            "grace_s": grace,
            "p50_over_grace": statistics.median(latencies) / grace,
        },
        "commands_per_fast_prompt": {
            "streaming_on": fast_on,
            "streaming_off": fast_off,
            "ratio": fast_on / fast_off,
        },
        "long_prompt": {
            "seconds": long_seconds,
            "commands_on": long_on,
            "commands_off": long_off,
            "extra_commands_per_second": (long_on - long_off) / long_seconds,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
