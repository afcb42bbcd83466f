"""The model gateway on a real Redis, in front of the fake providers: streams passed as
they come, fleet-wide limits kept, "slow down" answers retried out of the agent's sight,
quota exhaustion told apart, usage read from the wire and budgets refused in time."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from toolfleet import BudgetSpent, ProviderQuotaExhausted, Settings
from toolfleet.gateway.meter import Meter
from toolfleet.gateway.proxy import Gateway
from toolfleet.gateway.stats import upstream_stats
from toolfleet.gateway.upstream import Upstream
from toolfleet.models import Usage

from ..helpers import eventually
from ..programs import fake_anthropic, fake_openai
from ..programs.fakeserver import stop_serving


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(settings.broker_url) as connection:
        yield connection


@pytest.fixture
def openai() -> Iterator[fake_openai.FakeOpenAI]:
    server, thread = fake_openai.serve(0, chunk_delay=0.05)
    yield server
    stop_serving(server, thread)


def upstream(port: int, **fields: Any) -> Upstream:
    return Upstream.model_validate(
        {
            "name": f"fake-{port}",
            "kind": "openai",
            "url": f"http://127.0.0.1:{port}/v1",
            "prices": {"*": [1.0, 2.0]},
            **fields,
        }
    )


@pytest.fixture
def gateways(client: redis.Redis) -> Iterator[list[Gateway]]:
    made: list[Gateway] = []
    yield made
    for gateway in made:
        gateway.stop()


def start(
    made: list[Gateway], up: Upstream, client: redis.Redis, meter: Meter | None = None
) -> Gateway:
    gateway = Gateway(up, client, meter).start()
    made.append(gateway)
    return gateway


def chat(
    gateway: Gateway, text: str, stream: bool = False, max_tokens: int | None = None
) -> tuple[int, bytes, list[float]]:
    """POST a chat request through ``gateway``: status, body, and when each piece came."""
    port = int(gateway.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Authorization": "Bearer x"})
    response = conn.getresponse()
    pieces, times = [], []
    while True:
        data = response.read1(65536)
        if not data:
            break
        pieces.append(data)
        times.append(time.monotonic())
    conn.close()
    return response.status, b"".join(pieces), times


def test_a_stream_passes_as_it_comes_and_its_usage_is_read(
    openai: fake_openai.FakeOpenAI, client: redis.Redis, gateways: list[Gateway]
) -> None:
    meter = Meter()
    gateway = start(gateways, upstream(openai.port), client, meter)
    meter.begin()
    status, body, times = chat(gateway, "hello", stream=True)  # "Fake reply #1.": 3 words
    usage, error = meter.end()
    assert status == 200 and error is None
    assert b"data: [DONE]" in body
    assert len(times) >= 3 and times[-1] - times[0] > 0.09  # not buffered: 0.05 s a word
    sent = openai.requests[-1]["usage"]
    assert usage == Usage(
        sent=sent["prompt_tokens"],
        received=sent["completion_tokens"],
        cost=round((sent["prompt_tokens"] * 1 + sent["completion_tokens"] * 2) / 1e6, 10),
    )


def test_the_request_window_is_kept_by_gateways_together(
    openai: fake_openai.FakeOpenAI, client: redis.Redis, gateways: list[Gateway]
) -> None:
    openai.provider.rpm, openai.provider.window = 4, 3.0
    up = upstream(openai.port, rpm=4, window=3)
    three = [start(gateways, up, client) for _ in range(3)]
    statuses: list[int] = []

    def agent(gateway: Gateway) -> None:
        for i in range(4):
            statuses.append(chat(gateway, f"hello {i}")[0])

    threads = [threading.Thread(target=agent, args=(g,)) for g in three]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    took = time.monotonic() - began
    assert statuses == [200] * 12
    assert openai.provider.limited == 0 and openai.provider.peak_requests <= 4
    assert openai.provider.accepted == 12
    assert took >= 2 * 3  # 12 requests, 4 a window: two full windows waited
    assert upstream_stats(client)[up.name]["waited"] >= 8


def test_the_token_window_is_kept_too(
    openai: fake_openai.FakeOpenAI, client: redis.Redis, gateways: list[Gateway]
) -> None:
    openai.provider.tpm, openai.provider.window = 150, 3.0
    up = upstream(openai.port, tpm=150, window=3)
    two = [start(gateways, up, client) for _ in range(2)]
    statuses: list[int] = []

    def agent(gateway: Gateway) -> None:
        for i in range(6):  # about 20 tokens in and 10 asked for: 12 calls, 2 windows+
            statuses.append(chat(gateway, f"hello {i}", max_tokens=10)[0])

    threads = [threading.Thread(target=agent, args=(g,)) for g in two]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert statuses == [200] * 12
    assert openai.provider.limited == 0 and 0 < openai.provider.peak_tokens <= 150
    assert time.monotonic() - began >= 3  # more than a window's tokens: they waited
    assert upstream_stats(client)[up.name]["waited"] > 0


def test_slow_down_answers_are_retried_out_of_the_agents_sight(
    openai: fake_openai.FakeOpenAI, client: redis.Redis, gateways: list[Gateway]
) -> None:
    openai.provider.overload(2)
    up = upstream(openai.port)
    gateway = start(gateways, up, client)
    status, body, _ = chat(gateway, "hello")
    assert status == 200 and b"Fake reply" in body
    assert openai.provider.overloaded == 2
    stats = upstream_stats(client)[up.name]
    assert stats["throttled"] == 2 and stats["retries"] == 2
    # cut to 1 (a burst cuts once), then one more on the success, counted once the
    # answer was passed on (the agent may read it a moment before)
    eventually(lambda: upstream_stats(client)[up.name]["ceiling"] == 2, 10, "the ceiling")


def test_a_rate_limit_answer_is_waited_out_as_told(
    openai: fake_openai.FakeOpenAI, client: redis.Redis, gateways: list[Gateway]
) -> None:
    # the provider's limit is tighter than the one the gateway was told
    openai.provider.rpm, openai.provider.window = 1, 2.0
    gateway = start(gateways, upstream(openai.port), client)
    assert chat(gateway, "one")[0] == 200
    began = time.monotonic()
    assert chat(gateway, "two")[0] == 200
    assert time.monotonic() - began >= 1.0  # retry-after: 2 s from the first
    assert openai.provider.limited >= 1


def test_quota_exhaustion_stops_the_upstream_and_ends_the_prompt_so(
    openai: fake_openai.FakeOpenAI, client: redis.Redis, gateways: list[Gateway]
) -> None:
    openai.provider.quota_after = 1
    meter = Meter()
    up = upstream(openai.port)
    gateway = start(gateways, up, client, meter)
    other = start(gateways, up, client)  # another worker's gateway
    meter.begin()
    assert chat(gateway, "one")[0] == 200
    status, body, _ = chat(gateway, "two")  # 403: an agent would retry a 429
    assert status == 403 and b"insufficient_quota" in body and b"exceeded" in body
    _, error = meter.end()
    assert isinstance(error, ProviderQuotaExhausted) and "quota" in error.message
    status, _, _ = chat(other, "three")  # refused without asking the provider
    assert status == 403 and openai.provider.quota_refused == 1
    assert upstream_stats(client)[up.name]["quota_exhausted"] == 1


def test_a_request_past_the_items_budget_is_refused(
    openai: fake_openai.FakeOpenAI, client: redis.Redis, gateways: list[Gateway]
) -> None:
    meter = Meter()
    gateway = start(gateways, upstream(openai.port, prices={"*": [1000.0, 1000.0]}), client, meter)
    meter.begin(budget=0.025)  # a request here costs at least 0.018
    assert chat(gateway, "one")[0] == 200
    status, body, _ = chat(gateway, "two")
    assert status == 400 and b"budget" in body
    usage, error = meter.end()
    assert isinstance(error, BudgetSpent)
    assert usage is not None and usage.cost > 0
    assert len(openai.requests) == 1  # the refused request never reached the provider


def test_anthropic_streams_are_read_for_their_usage(
    client: redis.Redis, gateways: list[Gateway]
) -> None:
    server, thread = fake_anthropic.serve(0)
    try:
        up = Upstream(name="fake-claude", kind="anthropic", url=f"http://127.0.0.1:{server.port}")
        meter = Meter()
        gateway = start(gateways, up, client, meter)
        port = int(gateway.url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = {
            "model": "claude",
            "stream": True,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hello there"}],
        }
        meter.begin()
        conn.request("POST", "/v1/messages?beta=true", json.dumps(body), {"x-api-key": "k"})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        usage, _ = meter.end()
        assert response.status == 200 and b"message_stop" in data
        assert usage is not None and usage.sent > 0 and usage.received == 12
    finally:
        stop_serving(server, thread)
