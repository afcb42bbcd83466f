"""Reading the providers' answers: usage in every shape, waits, and quota refusals."""

from __future__ import annotations

import json

import pytest

from toolfleet.gateway.wire import UsageReader, is_quota, retry_after, usage_of


def sse(*events: dict[str, object]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def read(content_type: str, body: bytes, piece: int = 7) -> UsageReader:
    reader = UsageReader(content_type)
    for i in range(0, len(body), piece):  # as the bytes come, cut anywhere
        reader.feed(body[i : i + piece])
    reader.close()
    return reader


def test_openai_chat_whole_and_streamed() -> None:
    whole = {"model": "gpt-4o", "usage": {"prompt_tokens": 12, "completion_tokens": 5}}
    reader = read("application/json", json.dumps(whole).encode())
    assert (reader.sent, reader.received, reader.model) == (12, 5, "gpt-4o")
    streamed = (
        sse(
            {"model": "gpt-4o", "choices": [{"delta": {"content": "hi"}}]},
            {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9}},
        )
        + b"data: [DONE]\n\n"
    )
    reader = read("text/event-stream; charset=utf-8", streamed)
    assert (reader.sent, reader.received, reader.found) == (30, 9, True)


def test_anthropic_stream_input_at_start_output_at_the_end() -> None:
    body = (
        b"event: message_start\r\n"
        + b'data: {"type":"message_start","message":{"model":"claude-x",'
        + b'"usage":{"input_tokens":100,"cache_read_input_tokens":20,"output_tokens":1}}}\r\n\r\n'
        + b'event: message_delta\r\ndata: {"type":"message_delta","usage":{"output_tokens":42}}'
        + b"\r\n\r\n"
    )
    reader = read("text/event-stream", body, piece=5)
    assert (reader.sent, reader.received, reader.model) == (120, 42, "claude-x")


def test_responses_api_and_gemini_shapes() -> None:
    done = {
        "type": "response.completed",
        "response": {"usage": {"input_tokens": 7, "output_tokens": 3}},
    }
    assert usage_of(done) == (7, 3)
    gemini = {
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "thoughtsTokenCount": 1}
    }
    assert usage_of(gemini) == (8, 3)
    reader = read("application/json", json.dumps([gemini, gemini]).encode())
    assert (reader.sent, reader.received) == (8, 3)
    assert usage_of({"choices": []}) is None
    assert not read("text/event-stream", b"data: not json\n\n").found


class Headers(dict[str, str]):
    pass


@pytest.mark.parametrize(
    ("status", "headers", "body", "wait"),
    [
        (429, {"retry-after": "3"}, b"{}", 3.0),
        (429, {"retry-after-ms": "1500", "retry-after": "9"}, b"{}", 1.5),
        (429, {}, b'{"error": {"message": "Please try again in 1.5s."}}', 1.5),
        (429, {}, b'{"error": {"message": "Please try again in 250ms."}}', 0.25),
        (429, {}, b'{"error": {"details": [{"retryDelay": "4s"}]}}', 4.0),
        (529, {}, b'{"type": "error", "error": {"type": "overloaded_error"}}', 0.0),
        (503, {}, b"busy", 0.0),
        (200, {"retry-after": "3"}, b"{}", None),
        (400, {}, b"{}", None),
    ],
)
def test_retry_after_in_headers_and_bodies(
    status: int, headers: dict[str, str], body: bytes, wait: float | None
) -> None:
    assert retry_after(status, Headers(headers), body) == wait


def test_a_date_in_retry_after_counts_from_now() -> None:
    assert (
        retry_after(429, {"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, b"", now=1445412480)
        == 10
    )


@pytest.mark.parametrize(
    ("status", "body", "quota"),
    [
        (429, b'{"error": {"type": "insufficient_quota", "code": "insufficient_quota"}}', True),
        (400, b'{"error": {"message": "Your credit balance is too low to access the API."}}', True),
        (
            429,
            b'{"error": {"code": "rate_limit_exceeded", "message": "Rate limit reached"}}',
            False,
        ),
        (529, b'{"error": {"type": "overloaded_error"}}', False),
        (500, b"insufficient_quota", False),
    ],
)
def test_quota_is_told_apart_from_slow_down(status: int, body: bytes, quota: bool) -> None:
    assert is_quota(status, body) is quota
    if quota:
        assert retry_after(status, {}, body) is None  # never retried
