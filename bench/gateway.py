"""The model gateway's cost and yield: a model call's added latency against calling the
fake provider directly, and a rollout's throughput as a fraction of the provider's limit.

Run: .venv/bin/python bench/gateway.py [--calls 400] [--rpm 30] [--window 60] [--agents 6]

Latency: ``--calls`` non-streamed chat calls to ``tests/programs/fake_openai.py``,
alternated in rounds of 20 between calling it directly and through a gateway (an upstream
with request and token windows, so that every call is admitted through Redis); p50 of
each, and the difference (goal: <= 2 ms). Throughput: ``--agents`` threads, each behind
its own gateway (one per worker), call as fast as they are let through a provider that
allows ``--rpm`` requests per ``--window`` s and answers 429 past it; 3 x rpm calls in
all. The provider allows them in 2 windows at best (rpm at once, rpm a window later, rpm
two windows later): fraction = that ideal / the time the last call was taken (goal:
>= 0.95). Every call must be answered 200 and the provider must never answer a 429.
Figures: bench/out/gateway.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path

import redis
from harness import stats, with_redis

from toolfleet.gateway.proxy import Gateway
from toolfleet.gateway.upstream import Upstream

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.programs import fake_openai

OUT = Path(__file__).resolve().parent / "out"
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})


def call(conn: http.client.HTTPConnection) -> int:
    conn.request("POST", "/v1/chat/completions", BODY, {"Authorization": "Bearer x"})
    response = conn.getresponse()
    response.read()
    if response.will_close:
        conn.close()
    return response.status


def latency(client: redis.Redis, calls: int) -> dict[str, float]:
    server, thread = fake_openai.serve(0)
    up = Upstream(
        name="bench-latency",
        kind="openai",
        url=f"http://127.0.0.1:{server.port}/v1",
        rpm=10**7,
        tpm=10**9,
        prices={"*": (1.0, 2.0)},
    )
    gateway = Gateway(up, client).start()
    port = int(gateway.url.rsplit(":", 1)[1])
    direct = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    through = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples: dict[str, list[float]] = {"direct": [], "gateway": []}
    try:
        for _ in range(5):  # warm both paths
            call(direct), call(through)
        for round_ in range(calls // 20):
            order = ("direct", "gateway") if round_ % 2 == 0 else ("gateway", "direct")
            for kind in order:
                conn = direct if kind == "direct" else through
                for _ in range(10):
                    began = time.perf_counter()
                    assert call(conn) == 200
                    samples[kind].append((time.perf_counter() - began) * 1000)
    finally:
        direct.close()
        through.close()
        gateway.stop()
        server.shutdown()
        server.server_close()
        thread.join(5)
    direct_s, gateway_s = stats(samples["direct"]), stats(samples["gateway"])
    added = gateway_s["p50"] - direct_s["p50"]
    print(
        f"model call p50: direct {direct_s['p50']:.3f} ms, through the gateway "
        f"{gateway_s['p50']:.3f} ms: +{added:.3f} ms (goal <= 2 ms), "
        f"ratio {gateway_s['p50'] / direct_s['p50']:.3f}"
    )
    return {
        "direct_p50_ms": direct_s["p50"],
        "gateway_p50_ms": gateway_s["p50"],
        "direct_p95_ms": direct_s["p95"],
        "gateway_p95_ms": gateway_s["p95"],
        "added_p50_ms": added,
        "ratio_p50": gateway_s["p50"] / direct_s["p50"],
    }


def throughput(client: redis.Redis, rpm: int, window: int, agents: int) -> dict[str, float]:
    server, thread = fake_openai.serve(0)
    server.provider.rpm, server.provider.window = rpm, float(window)
    up = Upstream(
        name="bench-throughput",
        kind="openai",
        url=f"http://127.0.0.1:{server.port}/v1",
        rpm=rpm,
        window=window,
    )
    gateways = [Gateway(up, client).start() for _ in range(agents)]
    total = 3 * rpm
    left = [total]
    lock = threading.Lock()
    taken: list[float] = []
    statuses: list[int] = []

    def agent(gateway: Gateway) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))
        while True:
            with lock:
                if not left[0]:
                    break
                left[0] -= 1
            status = call(conn)
            with lock:
                statuses.append(status)
                taken.append(time.monotonic())
        conn.close()

    began = time.monotonic()
    threads = [threading.Thread(target=agent, args=(g,)) for g in gateways]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in gateways:
        g.stop()
    server.shutdown()
    server.server_close()
    thread.join(5)
    if statuses != [200] * total or server.provider.limited:
        raise SystemExit(f"calls not all answered: {statuses}; 429s {server.provider.limited}")
    achieved = max(taken) - began
    ideal = 2 * window
    fraction = ideal / achieved
    print(
        f"{total} calls by {agents} agents, provider limit {rpm} per {window} s: the last "
        f"taken at {achieved:.1f} s (ideal {ideal} s): fraction {fraction:.3f} (goal >= 0.95); "
        f"provider peak {server.provider.peak_requests} per window, 429s 0"
    )
    return {
        "calls": total,
        "rpm": rpm,
        "window_s": window,
        "agents": agents,
        "last_taken_s": achieved,
        "ideal_s": ideal,
        "fraction_of_limit": fraction,
        "provider_peak": server.provider.peak_requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rpm", type=int, default=30)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--agents", type=int, default=6)
    args = parser.parse_args()
    with with_redis() as settings, redis.Redis.from_url(settings.broker_url) as client:
        result = {
            "latency": latency(client, args.calls),
            "throughput": throughput(client, args.rpm, args.window, args.agents),
        }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gateway.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
