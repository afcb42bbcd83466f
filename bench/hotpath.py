"""Profile of the hot path, each side next to the bare Celery no-op baseline.

Run: .venv/bin/pip install py-spy   (a profiler, not a project dependency)
     .venv/bin/python bench/hotpath.py [--seconds 6 --rate 500 --backlog 5000]

Worker side: ``--backlog`` prompts (``sum(range(10))``, python profile) are queued before
the worker starts, so it serves them back to back with the producer idle; once it
answers, ``py-spy record -p <worker pid> -f raw -d SECONDS -r RATE --threads`` samples it
(wall clock: every thread, waiting or not), then the same with ``--gil`` (only the thread
holding the GIL: where the Python CPU goes). The same is done for a bare no-op worker
(bench/noop_app.py), and the on-CPU cost per prompt of each frame is compared.
Producer side: cProfile of ``Fleet.submit(...).get()`` one prompt at a time (and of
``send_task(...).get()`` of the no-op task), then of a bulk submit followed by the gets.

Writes bench/out/hotpath_worker_<kind>_<wall|gil>.txt (py-spy raw stacks),
bench/out/hotpath_producer_<kind>_<how>.prof (pstats) and bench/out/hotpath.json (the
summaries printed: CPU per prompt, shares by package, by thread, top frames).
It is not part of run_all.py (py-spy needs ptrace and is not installed by default).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import linecache
import os
import pstats
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from fleet_bench import OUT, command_counts, exit_on_sigterm, noop_app, write_json
from harness import BENCH, Procs, with_redis

from toolfleet import Fleet, Settings

PROMPT = "sum(range(10))"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def pyspy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return found


def package(path: str) -> str:
    """Which layer a source file belongs to."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/toolfleet/" in path:
        return "toolfleet"
    if "/lib/python3" in path:
        rest = path.split("/lib/python3", 1)[1].split("/", 1)[1]
        return "stdlib:" + rest.split("/", 1)[0].removesuffix(".py")
    return path


def trim(path: str) -> str:
    """``package/file.py`` of a source path."""
    for cut in ("site-packages/", "/src/", "/lib/python3.11/"):
        if cut in path:
            return path.split(cut, 1)[1]
    return path


def short(frame: str) -> str:
    """``func (package/file.py)`` of a py-spy frame, without its line number."""
    m = FRAME.match(frame)
    return f"{m['func']} ({trim(m['file'])})" if m else frame


SOURCE_ROOTS = [
    Path(sysconfig.get_paths()["purelib"]),
    Path(sysconfig.get_paths()["stdlib"]),
    BENCH.parent / "src",
]


def source_line(path: str, line: int | None) -> str:
    """The source text py-spy points at (its paths are cut short)."""
    if line is None:
        return ""
    for root in [Path("/"), *SOURCE_ROOTS]:
        candidate = root / path
        if candidate.exists():
            return linecache.getline(str(candidate), line).strip()
    return ""


def state_of(leaf: str) -> str:
    """What a thread whose innermost frame is ``leaf`` is doing (py-spy counts all)."""
    m = FRAME.match(leaf)
    if not m:
        return "on CPU"
    text = source_line(m["file"], int(m["line"]) if m["line"] else None)
    if m["func"] in ("Condition.wait", "Event.wait") or "waiter.acquire" in text:
        return "idle: sleeping (Event/Condition wait)"
    if "work_queue.get" in text:
        return "idle: pool thread waiting for a task"
    if "eventio" in m["file"] and "poll(" in text:
        return "idle: event loop in epoll"
    if "select.select" in text and "toolfleet" in m["file"]:
        return "waiting for the tool (select on its pty)"
    if ".recv(" in text:
        return "waiting for Redis (socket recv)"
    if "sendall(" in text:
        return "socket send to Redis"
    return "on CPU"


# where an on-CPU sample belongs: the first of these found in its stack (innermost last)
BUCKETS = [
    ("prompt (toolfleet/tasks.py", "toolfleet: the prompt task (supervisor, tool exchange)"),
    ("Backend.store_result", "Celery: store the result (GET + SETEX/PUBLISH)"),
    ("trace_task", "Celery: task tracer, other"),
    ("_flush_events", "Celery: publish task events (buffered, task.multi)"),
    ("_brpop_read", "kombu: receive the message (BRPOP), hand it to the pool"),
    ("Message.ack", "kombu: acknowledge (late ack)"),
    ("Heartbeat.", "toolfleet: heartbeat thread"),
    ("Supervisor._watch", "toolfleet: watcher thread"),
]
ACROSS = [  # costs spread over the buckets above
    ("Channel._create_client", "a new redis.Redis client per kombu call (Redis.__init__)"),
    ("dumps (json/", "JSON encoding"),
    ("uuid4", "uuid4"),
]


def bucket(frames: list[str]) -> str:
    text = ";".join(frames)
    return next((label for needle, label in BUCKETS if needle in text), "other (event loop...)")


def summarise_pyspy(raw: Path, rate: int, prompts: int) -> dict[str, Any]:
    """Per thread: what its samples were doing; for samples on CPU, the top frames.

    py-spy here samples waiting threads too (its idle detection does not see them),
    so each sample is classified by its innermost frame's source line.
    """
    threads: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    by_package: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    states: dict[str, str] = {}
    buckets: collections.Counter[str] = collections.Counter()
    across: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread "):
            thread = frames[0].split(": ", 1)[-1] if ": " in frames[0] else frames[0]
            thread = re.sub(r"-\d+(_\d+)?$", "", thread)  # ThreadPoolExecutor-0_0
            frames = frames[1:]
        top = frames[-1]
        state = states.setdefault(top, state_of(top))
        threads[thread][state] += count
        if state != "on CPU":
            continue
        busy += count
        buckets[bucket(frames)] += count
        text = ";".join(frames)
        for needle, label in ACROSS:
            if needle in text:
                across[label] += count
        m = FRAME.match(top)
        by_package[package(m["file"]) if m else top] += count
        leaf[short(top)] += count
        for name in {short(f) for f in frames}:
            inclusive[name] += count

    def shares(counter: collections.Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / busy, 1)) for k, v in counter.most_common(n)]

    per_thread = {}
    for name, counter in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(counter.values())
        per_thread[name] = {
            "samples": total,
            "ms_per_prompt": {
                k: round(1000 * v / rate / prompts, 3) for k, v in counter.most_common()
            },
            "share_pct": {k: round(100 * v / total, 1) for k, v in counter.most_common()},
        }
    ms = 1000 / rate / prompts if prompts else 0.0
    return {
        "prompts_during_sampling": prompts,
        "threads": per_thread,
        "on_cpu_ms_per_prompt": round(busy * ms, 3),
        "on_cpu_by_part": {
            k: {"ms_per_prompt": round(v * ms, 3), "share_pct": round(100 * v / busy, 1)}
            for k, v in buckets.most_common()
        },
        "on_cpu_across_parts": {
            k: {"ms_per_prompt": round(v * ms, 3), "share_pct": round(100 * v / busy, 1)}
            for k, v in across.most_common()
        },
        "on_cpu_inclusive_ms_per_prompt": {
            k: round(v * ms, 4) for k, v in inclusive.most_common() if not entry_frame(k)
        },
        "on_cpu_share_by_package_pct": shares(by_package, 15),
        "on_cpu_top_self_frames_pct": shares(leaf, 25),
        "on_cpu_top_inclusive_frames_pct": shares(inclusive, 45),
    }


def entry_frame(name: str) -> bool:
    """Frames every stack of a thread holds (start-up, event loop): no cost of their own."""
    return any(
        e in name
        for e in (
            "runpy",
            "toolfleet/cli.py",
            "toolfleet/__main__.py",
            "click/",
            "celery/bin/",
            "celery/app/base.py",
            "bootsteps.py",
            "Thread._bootstrap",
            "Thread.run",
            "WorkController.start",
            "Consumer.start",
            "Evloop.start",
            "asynloop",
            "Hub.create_loop",
        )
    )


def diff(a: dict[str, float], b: dict[str, float], n: int) -> list[tuple[str, float, float]]:
    """Frames costing more per prompt in ``a`` than in ``b`` (ms/prompt each)."""
    names = sorted({*a, *b}, key=lambda k: -(a.get(k, 0.0) - b.get(k, 0.0)))
    return [(k, a.get(k, 0.0), b.get(k, 0.0)) for k in names[:n]]


def children(pid: int) -> list[int]:
    """Child processes of ``pid``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_ticks(pid: int) -> tuple[int, int]:
    """utime and stime (clock ticks) of ``pid``, all its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    return int(fields[11]), int(fields[12])


def results_stored(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter(match="celery-task-meta-*", count=1000))


def profile_worker(settings: Settings, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with Procs(settings) as procs, Fleet(settings) as fleet:
        client = redis.Redis.from_url(settings.broker_url)
        client.flushdb()
        app = noop_app(settings)
        if kind == "toolfleet":
            handles: list[Any] = [fleet.submit(PROMPT, "python") for _ in range(args.backlog)]
            proc = procs.toolfleet_worker("python", "hot-python")
        else:
            handles = [app.send_task("bench.noop", queue="bench.noop") for _ in range(args.backlog)]
            proc = procs.noop_worker("hot-noop")
        deadline = time.monotonic() + 60
        while results_stored(client) < 50:  # started, and serving the backlog
            assert time.monotonic() < deadline and proc.poll() is None, "worker did not serve"
            time.sleep(0.1)
        # unsampled: CPU per prompt of every process on the path (the tool is a child)
        pids = {"worker": proc.pid, "redis-server": int(client.info("server")["process_id"])}
        for i, child in enumerate(children(proc.pid)):
            pids[f"tool {i + 1}"] = child
        unsampled_start, t0 = results_stored(client), time.perf_counter()
        cpu_start = {name: cpu_ticks(pid) for name, pid in pids.items()}
        commands_start = command_counts(client)
        time.sleep(4)
        commands_end = command_counts(client)
        cpu_end = {name: cpu_ticks(pid) for name, pid in pids.items()}
        before, t1 = results_stored(client), time.perf_counter()
        commands = {
            k: round((v - commands_start.get(k, 0)) / (before - unsampled_start), 2)
            for k, v in commands_end.items()
            if v > commands_start.get(k, 0)
        }
        unsampled_rate = (before - unsampled_start) / (t1 - t0)
        ms = 1000 / os.sysconf("SC_CLK_TCK") / (before - unsampled_start)
        unsampled_cpu = {
            name: {
                "user": round((cpu_end[name][0] - cpu_start[name][0]) * ms, 3),
                "system": round((cpu_end[name][1] - cpu_start[name][1]) * ms, 3),
            }
            for name in pids
        }
        passes: dict[str, dict[str, Any]] = {}
        for name, extra in (("wall", []), ("gil", ["--gil"])):
            raw = OUT / f"hotpath_worker_{kind}_{name}.txt"
            start, t1 = results_stored(client), time.perf_counter()
            subprocess.run(
                [
                    *[pyspy(), "record", "-p", str(proc.pid), "-o", str(raw), "-f", "raw"],
                    *["-d", str(args.seconds), "-r", str(args.rate), "--threads", *extra],
                ],
                check=True,
                capture_output=True,
            )
            served = results_stored(client) - start
            passes[name] = summarise_pyspy(raw, args.rate, served)
            passes[name]["prompts_per_s_while_sampled"] = round(
                served / (time.perf_counter() - t1), 1
            )
        left = args.backlog - results_stored(client)
        if left <= 0:
            print(f"warning: the {kind} backlog ran out while sampling", file=sys.stderr)
        for h in handles:
            value = h.get(timeout=300)
            assert kind != "toolfleet" or value.output == "45"
        del handles
        client.close()
    return {
        "prompts_per_s_unsampled": round(unsampled_rate, 1),
        "unsampled_cpu_ms_per_prompt_by_process": unsampled_cpu,
        "unsampled_redis_commands_per_prompt": dict(
            sorted(commands.items(), key=lambda kv: -kv[1])
        ),
        "backlog_left_after_sampling": left,
        **passes,
    }


def profile_producer(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """cProfile of submit+get, sequential and bulk, toolfleet and the bare no-op task."""
    out: dict[str, Any] = {}
    with Procs(settings) as procs, Fleet(settings) as fleet:
        app = noop_app(settings)
        procs.toolfleet_worker("python", "prod-python")
        procs.noop_worker("prod-noop")
        procs.wait_toolfleet(fleet, 1)

        def tf_send() -> Any:
            return fleet.submit(PROMPT, "python")

        def noop_send() -> Any:
            return app.send_task("bench.noop", queue="bench.noop")

        sends: dict[str, Callable[[], Any]] = {"toolfleet": tf_send, "noop": noop_send}
        for send in sends.values():  # warm-up
            for _ in range(50):
                send().get(timeout=30)
        for kind, send in sends.items():  # unprofiled: the producer's own CPU per prompt
            n = args.producer_prompts
            wall, cpu = time.perf_counter(), time.process_time()
            handles = [send() for _ in range(n)]
            submitted = time.process_time()
            for h in handles:
                h.get(timeout=60)
            out[f"{kind}_unprofiled_bulk"] = {
                "wall_ms_per_prompt": round(1000 * (time.perf_counter() - wall) / n, 3),
                "cpu_ms_per_prompt": round(1000 * (time.process_time() - cpu) / n, 3),
                "submit_cpu_ms_per_prompt": round(1000 * (submitted - cpu) / n, 3),
            }
            del handles
        for kind, send in sends.items():
            for how in ("sequential", "bulk"):
                prof = cProfile.Profile()
                n = args.producer_prompts
                start = time.perf_counter()
                if how == "sequential":
                    prof.enable()
                    for _ in range(n):
                        send().get(timeout=30)
                    prof.disable()
                else:
                    prof.enable()
                    handles = [send() for _ in range(n)]
                    for h in handles:
                        h.get(timeout=60)
                    prof.disable()
                    del handles
                wall = time.perf_counter() - start
                path = OUT / f"hotpath_producer_{kind}_{how}.prof"
                prof.dump_stats(str(path))
                out[f"{kind}_{how}"] = summarise_cprofile(path, n, wall)
    return out


def summarise_cprofile(path: Path, n: int, wall: float) -> dict[str, Any]:
    st = pstats.Stats(str(path))
    entries = st.stats  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_cc, calls, tottime, cumtime, _callers) in entries.items():
        name = func if file == "~" else f"{func} ({trim(file)}:{line})"
        rows.append((name, calls, tottime, cumtime))
    total = sum(r[2] for r in rows)
    waiting = sum(
        r[2]
        for r in rows
        if any(w in r[0] for w in ("method 'poll'", "method 'recv", "select", "epoll"))
    )
    by_cum = sorted(rows, key=lambda r: -r[3])
    by_tot = sorted(rows, key=lambda r: -r[2])

    def per_call_us(needle: str) -> float | None:
        hits = [r for r in rows if needle in r[0]]
        return round(1e6 * max(h[3] for h in hits) / n, 1) if hits else None

    return {
        "prompts": n,
        "wall_ms_per_prompt": round(1000 * wall / n, 3),
        "profiled_ms_per_prompt": round(1000 * total / n, 3),
        "waiting_share_pct": round(100 * waiting / total, 1) if total else None,
        "submit_us_per_call": per_call_us("submit (toolfleet/producer.py")
        or per_call_us("send_task (celery/app/base.py"),
        "get_us_per_call": per_call_us("get (toolfleet/producer.py")
        or per_call_us("get (celery/result.py"),
        "top_tottime": [
            (name, calls, round(100 * tot / total, 1), round(1e6 * tot / n, 1))
            for name, calls, tot, _ in by_tot[:20]
        ],
        "top_cumtime_us_per_prompt": [
            (name, calls, round(1e6 * cum / n, 1)) for name, calls, _, cum in by_cum[:35]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="py-spy -d")
    parser.add_argument("--rate", type=int, default=500, help="py-spy -r")
    parser.add_argument("--backlog", type=int, default=5000, help="prompts queued up front")
    parser.add_argument("--producer-prompts", type=int, default=500)
    args = parser.parse_args()
    exit_on_sigterm()
    pyspy()
    result: dict[str, Any] = {"seconds": args.seconds, "rate": args.rate}
    with with_redis() as settings:
        for kind in ("toolfleet", "noop"):
            result[f"worker_{kind}"] = profile_worker(settings, kind, args)
        result["producer"] = profile_producer(settings, args)
    for kind in ("toolfleet", "noop"):
        w = result[f"worker_{kind}"]
        print(
            f"== {kind} worker: {w['prompts_per_s_unsampled']} prompts/s unsampled; CPU ms per"
            f" prompt (/proc): {w['unsampled_cpu_ms_per_prompt_by_process']}"
        )
        print(f"  Redis commands per prompt: {w['unsampled_redis_commands_per_prompt']}")
        for name in ("wall", "gil"):
            p = w[name]
            print(
                f"  py-spy {name}: {p['prompts_per_s_while_sampled']} prompts/s while sampled,"
                f" on CPU {p['on_cpu_ms_per_prompt']} ms/prompt"
            )
            if name == "wall":
                for thread, t in p["threads"].items():
                    print(f"    thread {thread}: {t['share_pct']}")
            for part, v in [*p["on_cpu_by_part"].items(), *p["on_cpu_across_parts"].items()]:
                print(f"    {v['share_pct']:5.1f}% {v['ms_per_prompt']:7.3f} ms/prompt  {part}")
            for frame, pct in p["on_cpu_top_self_frames_pct"][:12]:
                print(f"    {pct:5.1f}%  {frame}")
    for name in ("wall", "gil"):
        tf, noop = result["worker_toolfleet"][name], result["worker_noop"][name]
        rows = diff(
            tf["on_cpu_inclusive_ms_per_prompt"], noop["on_cpu_inclusive_ms_per_prompt"], 30
        )
        result[f"worker_diff_{name}"] = rows
        print(f"== on-CPU ms/prompt, toolfleet vs no-op worker (py-spy {name}), largest extra:")
        for frame, a, b in rows[:20]:
            print(f"    {a:7.3f} {b:7.3f} {a - b:+7.3f}  {frame}")
    write_json("hotpath", result)
    for name, p in result["producer"].items():
        if "unprofiled" in name:
            print(f"== producer {name}: {p}")
            continue
        print(
            f"== producer {name}: {p['wall_ms_per_prompt']} ms/prompt wall, "
            f"submit {p['submit_us_per_call']} us, get {p['get_us_per_call']} us, "
            f"waiting {p['waiting_share_pct']}%"
        )
        for fn, calls, pct, us in p["top_tottime"][:10]:
            print(f"    {pct:5.1f}% {us:8.1f} us/prompt  {calls:7d}  {fn}")


if __name__ == "__main__":
    main()
