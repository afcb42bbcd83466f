"""Turns a tool's raw terminal output into clean text."""

from __future__ import annotations

import re

__all__ = ["clean_output"]

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def clean_output(raw: bytes) -> str:
    """Decode (invalid bytes replaced), drop escape sequences and CRs, trim end newlines."""
    text = raw.decode("utf-8", errors="replace")
    text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "")
    return text.rstrip("\n")
