"""The dashboard (`toolfleet web`) on 64 workers: page load, update latency, Redis load.

Run: .venv/bin/python bench/web.py [--workers 64] [--samples 30] [--window 30]

- page load: a new browser (Playwright driving Debian's Chromium) opens the login link
  until every worker's row is on the page; then a reload of the logged-in page.
- update latency: from a health change (an instance turns busy: the record's
  ``busy_since``) to the page showing it (a MutationObserver's clock; same machine, same
  clock); the dashboard reads the fleet every 0.5 s, the worker writes a changed record
  within 50 ms.
- Redis commands per second over ``--window`` seconds each: the idle fleet alone, then
  with the dashboard and no viewer, one viewer and three viewers. INFO commandstats gives
  the server's totals (their difference is the dashboard's, within the fleet's own
  noise); MONITOR, over the same windows, counts the commands sent on the dashboard
  process's own connections exactly. The dashboard's CPU too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import requests
from harness import BENCH, stats, with_redis

from toolfleet import Fleet
from toolfleet.cli.local import LocalFleet, free_port

TOKEN = "bench-web-token-0123456789"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]
SEEN = """() => {
  window.__seen = {};
  const body = document.querySelector('#instances tbody');
  new MutationObserver((changes) => {
    for (const change of changes) {
      const row = change.target;
      if (row.dataset && row.dataset.state === 'busy' && !(row.dataset.worker in window.__seen))
        window.__seen[row.dataset.worker] = Date.now() / 1000;
    }
  }).observe(body, {attributes: true, subtree: true, attributeFilter: ['data-state']});
}"""


def commands(client: redis.Redis) -> dict[str, int]:
    info = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of process ``pid``'s sockets (its Redis connections)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def monitor(url: str, pid: int, stop: threading.Event, seen: Counter[str]) -> None:
    """Count, by name, the commands Redis receives on ``pid``'s connections until
    ``stop`` (MONITOR; the ports are looked up again every second)."""
    client = redis.Redis.from_url(url, socket_timeout=2)
    ports, looked = local_ports(pid), time.monotonic()
    with client.monitor() as feed:
        while not stop.is_set():
            try:
                command = feed.next_command()
            except redis.TimeoutError:
                continue
            if time.monotonic() - looked > 1.0:
                ports, looked = local_ports(pid), time.monotonic()
            if int(command.get("client_port") or 0) in ports:
                seen[str(command["command"]).split()[0].lower()] += 1
    client.close()


def rates(
    client: redis.Redis, url: str, seconds: float, pid: int | None = None
) -> dict[str, float]:
    """Commands per second over ``seconds``, per command (``info`` left out); with
    ``pid``, its CPU share and its own commands (``_own``, ``_own:NAME``)."""
    stop, own = threading.Event(), Counter[str]()
    watcher = threading.Thread(target=monitor, args=(url, pid, stop, own)) if pid else None
    if watcher is not None:
        watcher.start()
        time.sleep(0.5)
    before, cpu0, t0 = commands(client), cpu_seconds(pid) if pid else 0.0, time.monotonic()
    time.sleep(seconds)
    after, took = commands(client), time.monotonic() - t0
    out = {
        name: (after[name] - before.get(name, 0)) / took
        for name in after
        if name != "info" and after[name] != before.get(name, 0)
    }
    if pid:
        out["_cpu_pct"] = 100 * (cpu_seconds(pid) - cpu0) / took
    if watcher is not None:
        stop.set()
        watcher.join(10)
        out["_own"] = sum(own.values()) / took
        out.update({f"_own:{name}": n / took for name, n in own.items()})
    return out


def total(rate: dict[str, float]) -> float:
    return sum(v for k, v in rate.items() if not k.startswith("_"))


def login(browser: Any, base: str, workers: int) -> tuple[Any, float]:
    """A fresh context logged in through the link; seconds until every row is shown."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(f"{base}/login?token={TOKEN}")
    page.wait_for_function(
        "n => document.querySelectorAll('#instances tr[data-worker]').length === n",
        arg=workers,
        timeout=60_000,
    )
    return page, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--window", type=float, default=30.0, help="seconds per Redis rate")
    args = parser.parse_args()
    chromium = os.environ.get("TOOLFLEET_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        sys.exit("no chromium on PATH")
    from playwright.sync_api import sync_playwright

    result: dict[str, Any] = {"workers": args.workers}
    logs = BENCH / "out" / "web-logs"
    logs.mkdir(parents=True, exist_ok=True)
    with with_redis() as settings:
        client = redis.Redis.from_url(settings.result_backend)
        local = LocalFleet(settings, {"echo": args.workers})
        t0 = time.monotonic()
        local.start(timeout=600)
        print(f"{args.workers} workers ready in {time.monotonic() - t0:.1f} s", flush=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        web = None
        try:
            time.sleep(5)  # let the start-up traffic settle
            url = settings.result_backend
            alone = rates(client, url, args.window)
            print(f"fleet alone: {total(alone):.1f} commands/s", flush=True)
            env = {**os.environ, **settings.to_env(), "TOOLFLEET_WEB_TOKEN": TOKEN}
            with open(logs / "web.log", "wb") as out:
                web = subprocess.Popen(
                    [sys.executable, "-m", "toolfleet", "web", "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=BENCH,
                )
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(base + "/healthz", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline and web.poll() is None, "toolfleet web"
                time.sleep(0.1)
            time.sleep(2)
            no_viewer = rates(client, url, args.window, web.pid)
            print(f"with the dashboard: {total(no_viewer):.1f} commands/s", flush=True)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                cold = []
                for _ in range(5):
                    page, took = login(browser, base, args.workers)
                    cold.append(took * 1000)
                    page.context.close()
                page, _ = login(browser, base, args.workers)
                warm = []
                for _ in range(5):
                    t = time.perf_counter()
                    page.reload()
                    page.wait_for_function(
                        "n => document.querySelectorAll('#instances tr[data-worker]').length === n",
                        arg=args.workers,
                    )
                    warm.append((time.perf_counter() - t) * 1000)
                one_viewer = rates(client, url, args.window, web.pid)
                print(f"one viewer: {total(one_viewer):.1f} commands/s", flush=True)
                others = [login(browser, base, args.workers)[0] for _ in range(2)]
                three_viewers = rates(client, url, args.window, web.pid)
                print(f"three viewers: {total(three_viewers):.1f} commands/s", flush=True)
                for other in others:
                    other.context.close()
                # update latency: an instance turns busy -> its row says so
                page.evaluate(SEEN)
                with Fleet(settings) as fleet:
                    nodes = sorted(h.worker for h in fleet.status())
                    latencies, handles = [], []
                    for i in range(args.samples):
                        node = nodes[i % len(nodes)]
                        handle = fleet.submit(":sleep 1.5", "echo", worker=node)
                        handles.append(handle)
                        page.wait_for_function(
                            f"() => {json.dumps(node)} in window.__seen", timeout=30_000
                        )
                        seen = page.evaluate(f"window.__seen[{json.dumps(node)}]")
                        busy = next(h for h in fleet.status() if h.worker == node).busy_since
                        assert busy is not None, node
                        latencies.append((seen - busy) * 1000)
                        page.evaluate(f"delete window.__seen[{json.dumps(node)}]")
                        # at random times: not in step with the dashboard's reads
                        time.sleep(random.uniform(0.2, 1.2))
                    for handle in handles:
                        handle.get(timeout=60)
                page.screenshot(path=str(BENCH / "out" / "web-64.png"))
                browser.close()
        finally:
            if web is not None:
                web.terminate()
                web.wait(15)
            local.stop()
            client.close()
    views = (("no viewer", no_viewer), ("one viewer", one_viewer), ("three viewers", three_viewers))
    own = {
        label: {k.removeprefix("_own:"): round(v, 2) for k, v in r.items() if k.startswith("_own:")}
        for label, r in views
    }
    result.update(
        page_load_cold_ms=stats(cold),
        page_load_warm_ms=stats(warm),
        update_latency_ms=stats(latencies),
        dashboard_commands_per_s={label: round(r["_own"], 2) for label, r in views},
        dashboard_commands_by_name=own,
        commandstats_difference_per_s={
            label: round(total(r) - total(alone), 1) for label, r in views
        },
        commands_per_s={
            "fleet alone": round(total(alone), 1),
            "dashboard, no viewer": round(total(no_viewer), 1),
            "dashboard, one viewer": round(total(one_viewer), 1),
            "dashboard, three viewers": round(total(three_viewers), 1),
        },
        dashboard_cpu_pct={
            "no viewer": round(no_viewer["_cpu_pct"], 1),
            "one viewer": round(one_viewer["_cpu_pct"], 1),
            "three viewers": round(three_viewers["_cpu_pct"], 1),
        },
    )
    print(json.dumps(result, indent=2))
    (BENCH / "out" / "web.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"update latency mean {statistics.fmean(latencies):.0f} ms")


if __name__ == "__main__":
    main()
