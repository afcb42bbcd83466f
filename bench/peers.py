"""toolfleet side by side with a Ray actor and a Jupyter kernel owning the same kind of REPL."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import queue
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from celery import Celery
from fleet_bench import OUT, exit_on_sigterm, noop_app, row, wait_pinged, write_json
from harness import Procs, stats, timed, with_redis
from run_all import table

from toolfleet import Fleet, Settings
from toolfleet.broker import celery_config
from toolfleet.builtins import BUILTIN_PROFILES
from toolfleet.tool import ToolInstance

PROMPT = "1+1"
ANSWER = "2"
INSTANCES = 2

NOTES = (
    "One process, one run. Two private Redis servers: one for 2 toolfleet python workers "
    "with `Settings(task_events=False)` (workers and producer), one for 2 with events on "
    "(the default) and a bare Celery no-op worker (bench/noop_app.py: threads pool, "
    "concurrency 1, task events on). Ray: `ray.init(num_cpus=2)` locally, 2 actors each "
    "owning a `ToolInstance` of the built-in python profile (the pty REPL a worker runs). "
    "Jupyter: 2 ipykernel python3 kernels through jupyter_client's blocking client; a "
    "round trip is `execute` until its `execute_result` (the reply on the shell channel "
    "is read after the clock stops). Raw pty floor: `ToolInstance.ask` in this process. "
    "Every prompt is `1+1` and every answer is checked to be `2`. Everything runs at once "
    "for the whole run; round trips are interleaved in blocks, throughput runs alternate."
)


# ---- the peers ----------------------------------------------------------------------


def missing(module: str, what: str) -> bool:
    """Whether ``module`` cannot be imported (then say which rows are skipped)."""
    try:
        __import__(module)
    except ImportError as exc:
        print(f"{what} skipped: {exc} (pip install 'toolfleet[bench]')", flush=True)
        return True
    return False


class RayPeer:
    """Ray actors each owning a pty python REPL (``ToolInstance``), on a local Ray."""

    def __init__(self, count: int) -> None:
        import ray

        self.ray = ray
        ray.init(
            num_cpus=INSTANCES,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
        try:
            self.actors = self._start(count)
        except BaseException:
            ray.shutdown()
            raise

    def _start(self, count: int) -> list[Any]:
        ray = self.ray

        @ray.remote
        class Repl:
            def __init__(self) -> None:
                self.tool = ToolInstance(BUILTIN_PROFILES["python"])
                self.tool.start()

            def ask(self, text: str) -> str:
                return self.tool.ask(text).output

            def close(self) -> None:
                self.tool.close()

        actors = [Repl.remote() for _ in range(count)]  # type: ignore[attr-defined]
        ray.get([a.ask.remote(PROMPT) for a in actors], timeout=120)
        return actors

    def close(self) -> None:
        try:
            self.ray.get([a.close.remote() for a in self.actors], timeout=30)
        finally:
            self.ray.shutdown()

    def ask(self) -> None:
        output = self.ray.get(self.actors[0].ask.remote(PROMPT), timeout=30)
        assert output == ANSWER, output

    def pool_map(self, n: int) -> float:
        """``ActorPool.map`` of ``n`` prompts over the actors: prompts/s."""
        from ray.util import ActorPool

        pool = ActorPool(self.actors)
        start = time.perf_counter()
        outputs = list(pool.map(lambda actor, text: actor.ask.remote(text), [PROMPT] * n))
        elapsed = time.perf_counter() - start
        assert outputs == [ANSWER] * n, set(outputs)
        return n / elapsed

    def window(self, n: int, in_flight: int) -> float:
        """``n`` prompts, ``in_flight`` at once spread over the actors: prompts/s."""
        ray = self.ray
        load = dict.fromkeys(range(len(self.actors)), 0)
        owner: dict[Any, int] = {}
        sent = done = 0
        start = time.perf_counter()
        while done < n:
            while sent < n and len(owner) < in_flight:
                index = min(load, key=load.__getitem__)
                owner[self.actors[index].ask.remote(PROMPT)] = index
                load[index] += 1
                sent += 1
            ready, _ = ray.wait(list(owner), num_returns=1, timeout=30)
            assert ready, "no Ray answer in 30 s"
            for ref in ready:
                assert ray.get(ref) == ANSWER
                load[owner.pop(ref)] -= 1
                done += 1
        return n / (time.perf_counter() - start)


class Kernel:
    """One ipykernel python3 kernel and its blocking client."""

    def __init__(self) -> None:
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel()
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def close(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            self.manager.shutdown_kernel(now=True)

    def result_of(self, msg: dict[str, Any]) -> tuple[str, str] | None:
        """(parent msg id, output) if ``msg`` answers an execute request, else None."""
        kind = msg["msg_type"]
        if kind == "execute_result":
            return msg["parent_header"]["msg_id"], msg["content"]["data"]["text/plain"]
        if kind == "error":
            raise RuntimeError(f"kernel error: {msg['content'].get('evalue')}")
        return None

    def drain_replies(self) -> None:
        """Read the execute replies waiting on the shell channel."""
        with contextlib.suppress(queue.Empty):
            while True:
                self.client.get_shell_msg(timeout=0)

    def ask_ms(self) -> float:
        """Milliseconds from ``execute`` to its ``execute_result``."""
        start = time.perf_counter()
        msg_id = self.client.execute(PROMPT)
        while True:
            got = self.result_of(self.client.get_iopub_msg(timeout=30))
            if got is not None and got[0] == msg_id:
                elapsed = (time.perf_counter() - start) * 1000
                assert got[1] == ANSWER, got
                break
        while self.client.get_shell_msg(timeout=30)["parent_header"].get("msg_id") != msg_id:
            pass
        return elapsed


class JupyterPeer:
    """Kernels driven from this thread: one at a time, or many requests in flight."""

    def __init__(self, count: int) -> None:
        self.kernels: list[Kernel] = []
        try:
            for _ in range(count):
                self.kernels.append(Kernel())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for kernel in self.kernels:
            with contextlib.suppress(Exception):
                kernel.close()

    def ask_ms(self) -> float:
        return self.kernels[0].ask_ms()

    def window(self, n: int, in_flight: int) -> float:
        """``n`` executes, ``in_flight`` at once spread over the kernels: prompts/s."""
        import zmq

        poller = zmq.Poller()
        by_socket = {}
        for kernel in self.kernels:
            socket = kernel.client.iopub_channel.socket
            poller.register(socket, zmq.POLLIN)
            by_socket[socket] = kernel
        load = {id(k): 0 for k in self.kernels}
        owner: dict[str, Kernel] = {}
        sent = done = 0
        start = time.perf_counter()
        while done < n:
            while sent < n and len(owner) < in_flight:
                kernel = min(self.kernels, key=lambda k: load[id(k)])
                owner[kernel.client.execute(PROMPT)] = kernel
                load[id(kernel)] += 1
                sent += 1
            events = poller.poll(30_000)
            assert events, "no Jupyter answer in 30 s"
            for socket, _ in events:
                kernel = by_socket[socket]
                with contextlib.suppress(queue.Empty):
                    while True:
                        got = kernel.result_of(kernel.client.iopub_channel.get_msg(timeout=0))
                        if got is not None and got[0] in owner:
                            assert got[1] == ANSWER, got
                            load[id(owner.pop(got[0]))] -= 1
                            done += 1
                kernel.drain_replies()
        elapsed = time.perf_counter() - start
        for kernel in self.kernels:
            kernel.drain_replies()
        return n / elapsed


# ---- toolfleet ----------------------------------------------------------------------


@dataclass
class Side:
    """One toolfleet fleet of the run: its settings, producer and Redis."""

    name: str
    settings: Settings
    fleet: Fleet
    redis: redis.Redis

    def ask(self) -> None:
        assert self.fleet.submit(PROMPT, "python").get(timeout=30).output == ANSWER

    def map_rate(self, n: int, in_flight: int | None, chunk: int | None = None) -> float:
        """``Fleet.map`` of ``n`` prompts (``chunk`` items a message if given): prompts/s."""
        options: dict[str, Any] = {}
        if in_flight is not None:
            options["in_flight"] = in_flight
        if chunk is not None:
            options["chunk"] = chunk
        start = time.perf_counter()
        outcomes = list(self.fleet.map([PROMPT] * n, "python", **options))
        elapsed = time.perf_counter() - start
        bad = [o for o in outcomes if not (o.ok and o.result and o.result.output == ANSWER)]
        assert len(outcomes) == n and not bad, f"{len(outcomes)} outcomes, first bad: {bad[:1]}"
        return n / elapsed

    def events_per_prompt(self, count: int = 50) -> float:
        """Celery events published on this Redis per prompt (task and worker events)."""
        listener = self.redis.pubsub()
        try:
            listener.psubscribe("*celeryev*")
            while listener.get_message(timeout=0.2) is not None:
                pass  # the subscription's confirmation and anything already under way
            for _ in range(count):
                self.ask()
            events = 0
            while (msg := listener.get_message(timeout=0.3)) is not None:
                events += msg["type"] == "pmessage"
            return events / count
        finally:
            listener.close()


@contextlib.contextmanager
def toolfleet_side(name: str, task_events: bool) -> Iterator[tuple[Side, Procs]]:
    """A private Redis with 2 python workers (in one process) and a producer."""
    with with_redis() as plain:
        settings = plain.model_copy(update={"task_events": task_events})
        with (
            Procs(settings) as procs,
            Fleet(settings) as fleet,
            redis.Redis.from_url(settings.broker_url) as client,
        ):
            procs.toolfleet_workers("python", f"peers-{name}-", INSTANCES)
            yield Side(name, settings, fleet, client), procs


def map_accepts_chunk() -> bool:
    return "chunk" in inspect.signature(Fleet.map).parameters


# ---- the run ------------------------------------------------------------------------


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="prompts per map run (a)")
    parser.add_argument("--map-rounds", type=int, default=1, help="map runs of each kind (a)")
    parser.add_argument("--in-flight", type=int, default=None, help="map's in_flight (a)")
    parser.add_argument("--chunk", type=int, default=50, help="map's chunk, if it has one")
    parser.add_argument("--rounds", type=int, default=300, help="round trips per peer (b)")
    parser.add_argument("--block", type=int, default=10, help="round trips in a row (b)")
    parser.add_argument("--prompts", type=int, default=2000, help="prompts per window run (c)")
    parser.add_argument("--window", type=int, default=16, help="prompts in flight (c)")
    parser.add_argument("--tput-rounds", type=int, default=3, help="window runs of each (c)")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds, args.prompts, args.tput_rounds = 400, 40, 200, 1
    exit_on_sigterm()
    events_setting = "task_events" in Settings.model_fields
    if not events_setting:
        print("Settings has no task_events: the events-off rows are skipped", flush=True)
    no_ray = missing("ray", "Ray rows")
    no_jupyter = missing("jupyter_client", "Jupyter rows") or missing("ipykernel", "Jupyter rows")
    chunked = map_accepts_chunk()
    if not chunked:
        print("Fleet.map has no chunk option: the chunked map rows are skipped", flush=True)

    started = time.time()
    with contextlib.ExitStack() as stack:
        on, on_procs = stack.enter_context(toolfleet_side("on", True))
        on_procs.noop_worker("peers-noop")
        off: Side | None = None
        off_app: Celery | None = None
        if events_setting:
            off, off_procs = stack.enter_context(toolfleet_side("off", False))
            # the bare no-op with events off too: what any Celery task costs, the floor
            # of toolfleet's events-off round trip
            off_procs.noop_worker("peers-noop-off", events=False)
            off_app = Celery("bench-noop-off", set_as_current=False)
            off_app.conf.update(celery_config(off.settings))
        sides = [s for s in (off, on) if s is not None]
        ray_peer = jupyter = None
        if not no_ray:
            ray_peer = RayPeer(INSTANCES)
            stack.callback(ray_peer.close)
        if not no_jupyter:
            jupyter = JupyterPeer(INSTANCES)
            stack.callback(jupyter.close)
        floor = ToolInstance(BUILTIN_PROFILES["python"])
        stack.callback(floor.close)
        floor.start()
        app = noop_app(on.settings)
        app.conf.task_send_sent_event = True  # the baseline keeps its events on
        for side in sides:
            side.fleet.wait_ready(INSTANCES, "python", timeout=120)
        wait_pinged(app, INSTANCES + 1)  # the no-op worker and the fleet's on its Redis
        if off_app is not None:
            wait_pinged(off_app, INSTANCES + 1)
        print(f"all peers up in {time.time() - started:.1f} s", flush=True)

        # (b) round trip of one prompt, interleaved in blocks
        def via_noop() -> None:
            app.send_task("bench.noop", queue="bench.noop").get(timeout=30)

        def via_floor() -> None:
            assert floor.ask(PROMPT).output == ANSWER

        samplers: dict[str, Callable[[], float]] = {}
        for side in sides:
            samplers[f"toolfleet_events_{side.name}"] = lambda s=side: timed(s.ask)
        samplers["celery_noop"] = lambda: timed(via_noop)
        if off_app is not None:
            samplers["celery_noop_events_off"] = lambda: timed(
                lambda: off_app.send_task("bench.noop", queue="bench.noop").get(timeout=30)
            )
        samplers["pty_floor"] = lambda: timed(via_floor)
        if ray_peer is not None:
            samplers["ray_actor"] = lambda: timed(ray_peer.ask)
        if jupyter is not None:
            samplers["jupyter_kernel"] = jupyter.ask_ms
        for sample in samplers.values():  # warm up connections and every instance
            for _ in range(20):
                sample()
        trips: dict[str, list[float]] = {name: [] for name in samplers}
        for block in range(-(-args.rounds // args.block)):
            names = list(samplers) if block % 2 == 0 else list(reversed(samplers))
            for name in names:
                trips[name] += [samplers[name]() for _ in range(args.block)]
        print("round trips done", flush=True)

        # are the events off where the setting says so? (they travel as Redis publishes)
        events = {side.name: side.events_per_prompt() for side in sides}
        print(f"Celery events per prompt: {events}", flush=True)

        # (a) bulk: map of N prompts over 2 workers vs Ray's ActorPool.map over 2 actors
        bulk: dict[str, Callable[[], float]] = {}
        for side in sides:
            bulk[f"map_events_{side.name}"] = lambda s=side: s.map_rate(args.n, args.in_flight)
        for size in (1, args.chunk) if chunked else ():
            bulk[f"map_events_on_chunk{size}"] = lambda size=size: on.map_rate(
                args.n, args.in_flight, size
            )
        if ray_peer is not None:
            bulk["ray_actorpool_map"] = lambda: ray_peer.pool_map(args.n)
        maps: dict[str, list[float]] = {name: [] for name in bulk}
        for i in range(args.map_rounds):
            for name in list(bulk) if i % 2 == 0 else list(reversed(bulk)):
                maps[name].append(bulk[name]())
                print(f"{name}: {maps[name][-1]:.0f} prompts/s", flush=True)

        # (c) throughput: 2 instances, `window` prompts in flight
        windowed: dict[str, Callable[[int], float]] = {}
        for side in sides:
            windowed[f"toolfleet_events_{side.name}"] = lambda n, s=side: s.map_rate(
                n, args.window, 1 if chunked else None
            )
        if ray_peer is not None:
            windowed["ray_actors"] = lambda n: ray_peer.window(n, args.window)
        if jupyter is not None:
            windowed["jupyter_kernels"] = lambda n: jupyter.window(n, args.window)
        for fn in windowed.values():  # warm-up
            fn(min(200, args.prompts))
        rates: dict[str, list[float]] = {name: [] for name in windowed}
        for i in range(args.tput_rounds):
            for name in list(windowed) if i % 2 == 0 else list(reversed(windowed)):
                rates[name].append(windowed[name](args.prompts))
        print(f"throughput: {rates}", flush=True)

    rows = make_rows(args, trips, maps, rates, events)
    data = {
        "prompt": PROMPT,
        "instances": INSTANCES,
        "sizes": {
            "map_n": args.n,
            "map_rounds": args.map_rounds,
            "map_in_flight": args.in_flight,
            "chunk": args.chunk if chunked else None,
            "profile_chunk": getattr(BUILTIN_PROFILES["python"], "chunk", 1),
            "round_trips_per_peer": args.rounds,
            "block": args.block,
            "window_prompts": args.prompts,
            "window": args.window,
            "window_rounds": args.tput_rounds,
        },
        "round_trip_ms": {name: stats(values) for name, values in trips.items()},
        "map_prompts_per_s": maps,
        "window_prompts_per_s": rates,
        "celery_events_per_prompt": events,
        "seconds": time.time() - started,
        "rows": rows,
    }
    write_json("peers", data)
    title = f"peers side by side, {datetime.now():%Y-%m-%d %H:%M}"
    markdown = [f"## {title}", "", NOTES, "", *table(rows), ""]
    (OUT / "peers.md").write_text("\n".join(markdown))
    print("\n".join(markdown))


def make_rows(
    args: argparse.Namespace,
    trips: dict[str, list[float]],
    maps: dict[str, list[float]],
    rates: dict[str, list[float]],
    events: dict[str, float],
) -> list[dict[str, Any]]:
    """The figures of the run against their same-run baselines (a row per pair measured)."""
    rows: list[dict[str, Any]] = []

    def add(
        figure: str,
        value: float | None,
        unit: str,
        label: str | None = None,
        base: float | None = None,
        target: tuple[str, Callable[[float], bool]] | None = None,
    ) -> None:
        if value is None or (label is not None and base is None):
            return
        ratio = value / base if base else None
        passed = target[1](ratio) if target and ratio is not None else None
        rows.append(
            row(figure, value, unit, label, base, target=target and target[0], passed=passed)
        )

    # (a) bulk
    ray_map = median(maps.get("ray_actorpool_map", []))
    ray_label = f"Ray ActorPool.map, {INSTANCES} actors"
    at_least_ray = ("toolfleet >= Ray", lambda r: r >= 1.0)
    default_chunk = getattr(BUILTIN_PROFILES["python"], "chunk", 1)
    for name, values in maps.items():
        if name == "ray_actorpool_map":
            continue
        side, _, size = name.removeprefix("map_events_").partition("_chunk")
        chunk = f"chunk={size}" if size else f"the profile's chunk ({default_chunk})"
        figure = f"map of {args.n} `1+1` over {INSTANCES} workers, events {side}, {chunk}"
        if ray_map is None:
            add(figure, median(values), "prompts/s")
        add(figure, median(values), "prompts/s", ray_label, ray_map, at_least_ray)

    # (b) round trip p50
    p50 = {name: stats(values)["p50"] for name, values in trips.items() if values}
    ray_rt, noop, floor = p50.get("ray_actor"), p50["celery_noop"], p50["pty_floor"]
    off, on = p50.get("toolfleet_events_off"), p50["toolfleet_events_on"]
    floor_label = "bare Celery no-op p50 + raw pty floor p50"
    add(
        "round trip p50, toolfleet events off",
        off,
        "ms",
        "Ray actor round trip p50",
        ray_rt,
        ("<= 1.5x Ray (events off)", lambda r: r <= 1.5),
    )
    noop_off = p50.get("celery_noop_events_off")
    # the floor of any Celery task: no toolfleet round trip with events off can beat it
    add(
        "bare Celery no-op round trip p50, events off",
        noop_off,
        "ms",
        "Ray actor round trip p50",
        ray_rt,
    )
    add(
        "round trip p50, toolfleet events off",
        off,
        "ms",
        "bare Celery no-op p50, events off",
        noop_off,
    )
    add("round trip p50, toolfleet events on", on, "ms", "Ray actor round trip p50", ray_rt)
    add(
        "round trip p50, toolfleet events on",
        on,
        "ms",
        floor_label,
        noop + floor,
        ("<= 1.10x bare Celery (events on)", lambda r: r <= 1.10),
    )
    add("round trip p50, toolfleet events on", on, "ms", "bare Celery no-op p50", noop)
    add("round trip p50, toolfleet events off", off, "ms", floor_label, noop + floor)
    add("round trip p50, toolfleet events on", on, "ms", "toolfleet events off p50", off)
    add(
        "round trip p50, toolfleet events on",
        on,
        "ms",
        "Jupyter execute round trip p50",
        p50.get("jupyter_kernel"),
    )
    add("Ray actor round trip p50", ray_rt, "ms", "raw pty floor p50", floor)
    add(
        "Jupyter execute round trip p50",
        p50.get("jupyter_kernel"),
        "ms",
        "raw pty floor p50",
        floor,
    )
    add("bare Celery no-op round trip p50", noop, "ms", "raw pty floor p50", floor)
    add("raw pty floor (ToolInstance.ask in-process) p50", floor, "ms")
    add(
        "Celery events published per prompt, `task_events=False`",
        events.get("off"),
        "events",
        "same, `task_events=True`",
        events.get("on"),
    )

    # (c) throughput, `window` in flight
    ray_w = median(rates.get("ray_actors", []))
    jupyter_w = median(rates.get("jupyter_kernels", []))
    for side in ("off", "on"):
        value = median(rates.get(f"toolfleet_events_{side}", []))
        figure = (
            f"{INSTANCES} instances, {args.window} prompts in flight (one a message), "
            f"toolfleet events {side}"
        )
        if ray_w is None and jupyter_w is None:
            add(figure, value, "prompts/s")
        add(figure, value, "prompts/s", f"{INSTANCES} Ray actors, {args.window} in flight", ray_w)
        add(
            figure,
            value,
            "prompts/s",
            f"{INSTANCES} Jupyter kernels, {args.window} in flight",
            jupyter_w,
        )
    return rows


if __name__ == "__main__":
    main()
