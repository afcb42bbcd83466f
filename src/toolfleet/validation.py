"""Checks on prompt text, run by the producer before enqueueing and by the worker again."""

from __future__ import annotations

import re

from toolfleet.errors import PromptRejected

__all__ = ["DEFAULT_MAX_PROMPT_BYTES", "validate_prompt"]

DEFAULT_MAX_PROMPT_BYTES = 64 * 1024

# C0 controls except TAB and LF (CR is normalised away), DEL, and C1 controls (incl. CSI).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def validate_prompt(
    text: object,
    *,
    max_bytes: int = DEFAULT_MAX_PROMPT_BYTES,
    allow_control: bool = False,
) -> str:
    """Return ``text`` normalised (CRLF -> LF) or raise :class:`PromptRejected`."""
    if not isinstance(text, str):
        raise PromptRejected(f"prompt must be a string, not {type(text).__name__}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise PromptRejected(f"prompt is not valid UTF-8: {exc.reason}") from None
    if size > max_bytes:
        raise PromptRejected(f"prompt is {size} bytes, over the limit of {max_bytes}")
    if "\x00" in text:
        raise PromptRejected("prompt contains a NUL byte")
    text = text.replace("\r\n", "\n")
    if not allow_control:
        bad = _CONTROL.search(text)
        if bad is not None:
            raise PromptRejected(
                f"prompt contains control character {bad.group()!r} at offset {bad.start()}"
            )
    return text
