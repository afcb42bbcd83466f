"""What the providers' answers say: token counts (streamed or not), how long to wait, and
whether a refusal means "slow down" or "no more quota"."""

from __future__ import annotations

import json
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["UsageReader", "is_quota", "retry_after", "usage_of"]

#: statuses that mean "too much, wait and try again": rate limited, overloaded, unavailable
_SLOW_DOWN = frozenset({429, 503, 529})
#: words of the providers' bodies when no retry will help: the account's quota or credit
_QUOTA = re.compile(
    r"insufficient_quota|exceeded your current quota|billing|credit balance|"
    r"quota exceeded for quota metric .* per day|check your plan",
    re.IGNORECASE,
)
#: "Please try again in 1.5s" / "in 20ms" (OpenAI's body form)
_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s)\b", re.IGNORECASE)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def is_quota(status: int, body: bytes) -> bool:
    """A refusal no retry will help: the account is out of quota or credit."""
    if status not in (400, 402, 403, 429):
        return False
    return bool(_QUOTA.search(body[:8192].decode("utf-8", "replace")))


def retry_after(status: int, headers: Any, body: bytes, now: float | None = None) -> float | None:
    """Seconds the provider asks to wait before trying again, for a "slow down" answer
    (None for any other answer; 0.0 when it names no time). Headers ``retry-after-ms``,
    ``retry-after`` (seconds or a date), then the bodies' forms: OpenAI's "try again in
    1.5s", Gemini's ``RetryInfo.retryDelay`` ("3s")."""
    if status not in _SLOW_DOWN or is_quota(status, body):
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                pass
            else:
                return max(0.0, when - (time.time() if now is None else now))
    text = body[:8192].decode("utf-8", "replace")
    found = _TRY_AGAIN.search(text)
    if found:
        return float(found[1]) / (1000 if found[2].lower() == "ms" else 1)
    delay = re.search(r'"retryDelay"\s*:\s*"(\d+(?:\.\d+)?)s"', text)
    if delay:
        return float(delay[1])
    return 0.0


def usage_of(payload: Any) -> tuple[int, int] | None:
    """Tokens (in, out) of one response object or stream event, in any of the shapes:
    OpenAI chat (``usage.prompt_tokens``), Responses (``response.usage.input_tokens``),
    Anthropic (``message.usage`` of message_start, ``usage`` of message_delta) and
    Gemini (``usageMetadata``). None when it carries none."""
    if not isinstance(payload, dict):
        return None
    for holder in (payload.get("response"), payload.get("message")):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            payload = holder
            break
    usage = payload.get("usage")
    if isinstance(usage, dict):
        sent = usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0
        sent += (usage.get("cache_creation_input_tokens") or 0) + (
            usage.get("cache_read_input_tokens") or 0
        )
        received = usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0
        return int(sent), int(received)
    meta = payload.get("usageMetadata")
    if isinstance(meta, dict):
        return int(meta.get("promptTokenCount") or 0), int(
            (meta.get("candidatesTokenCount") or 0) + (meta.get("thoughtsTokenCount") or 0)
        )
    return None


class UsageReader:
    """Reads a response's bytes as they pass and keeps the token counts it carries.

    A server-sent event stream is read event by event. Counts of one stream are merged
    by the largest seen for each side: Anthropic gives the input in message_start and the
    output in message_delta; Gemini repeats a growing ``usageMetadata``; OpenAI sends one
    usage chunk. A JSON body is read whole at the end."""

    #: a body kept for its usage is cut here (an answer larger than this has its usage
    #: in the stream's last events, which are kept)
    KEEP = 4 * 1024 * 1024

    def __init__(self, content_type: str) -> None:
        self.streamed = "event-stream" in content_type
        self._buffer = b""
        self.sent = 0
        self.received = 0
        self.found = False
        self.model: str | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if not self.streamed:
            if len(self._buffer) > self.KEEP:
                self._buffer = self._buffer[-self.KEEP :]
            return
        while True:
            end = self._buffer.find(b"\n\n")
            cut = 2
            crlf = self._buffer.find(b"\r\n\r\n")
            if crlf != -1 and (end == -1 or crlf < end):
                end, cut = crlf, 4
            if end == -1:
                return
            event, self._buffer = self._buffer[:end], self._buffer[end + cut :]
            for line in event.splitlines():
                if line.startswith(b"data:"):
                    self._take(_json(line[5:].strip()))

    def close(self) -> None:
        """The response ended: read what is left (a JSON body, a last event)."""
        if self.streamed:
            self.feed(b"\n\n")
        else:
            self._take(_json(self._buffer))
        self._buffer = b""

    def _take(self, payload: Any) -> None:
        if isinstance(payload, list):  # Gemini's non-streamed streamGenerateContent
            for part in payload:
                self._take(part)
            return
        if not isinstance(payload, dict):
            return
        model = payload.get("model") or (payload.get("message") or {}).get("model")
        if isinstance(model, str):
            self.model = model
        counts = usage_of(payload)
        if counts is None:
            return
        self.found = True
        self.sent = max(self.sent, counts[0])
        self.received = max(self.received, counts[1])
