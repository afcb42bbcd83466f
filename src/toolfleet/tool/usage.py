"""Tokens and cost a tool reports after an answer, read with its profile's usage_pattern."""

from __future__ import annotations

import re

from toolfleet.models import Usage

__all__ = ["parse_usage", "priced"]


def _count(text: str | None) -> int:
    """'2.5k' -> 2500, '12k' -> 12000, '1,234' -> 1234, '1.2M' -> 1200000."""
    if not text:
        return 0
    text = text.replace(",", "")
    scale = {"k": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return round(float(text.rstrip("kM")) * scale)


def parse_usage(pattern: re.Pattern[str] | None, output: str) -> Usage | None:
    """The sum of every usage line ``pattern`` finds in ``output``; None if none."""
    if pattern is None:
        return None
    found = [
        Usage(
            sent=_count(m.groupdict().get("sent")),
            received=_count(m.groupdict().get("received")),
            cost=float(m.groupdict().get("cost") or 0),
        )
        for m in pattern.finditer(output)
    ]
    return Usage.total(found)


def priced(usage: Usage | None, prices: tuple[float, float] | None) -> Usage | None:
    """``usage`` with its cost from ``prices`` (per million tokens sent, received) when
    the tool reported tokens but no cost."""
    if usage is None or prices is None or usage.cost > 0:
        return usage
    cost = (usage.sent * prices[0] + usage.received * prices[1]) / 1_000_000
    return usage.model_copy(update={"cost": round(cost, 10)})
