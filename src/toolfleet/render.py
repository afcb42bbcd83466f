"""Rich tables for the command line: fleet status, prompt results, profiles."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.table import Table

from .models import InstanceHealth, PromptResult
from .profiles import Profile

__all__ = ["profiles_table", "results_table", "status_table"]

_STATE_STYLE = {
    "ready": "green",
    "busy": "cyan",
    "starting": "yellow",
    "restarting": "yellow",
    "failed": "bold red",
    "stopping": "magenta",
}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}M"


def status_table(records: Iterable[InstanceHealth], now: float | None = None) -> Table:
    """One row per instance; the session and error columns only when one has them."""
    now = time.time() if now is None else now
    records = list(records)
    table = Table(title="toolfleet status", title_justify="left")
    for col in (
        "worker",
        "profile",
        "state",
        "pid",
        "gen",
        "served",
        "last ms",
        "p95 ms",
        "rss",
        "beat",
    ):
        table.add_column(col, no_wrap=True)
    sessions = any(r.session for r in records)
    errors = any(r.last_error for r in records)
    if sessions:
        table.add_column("session", no_wrap=True)
    if errors:
        table.add_column("last error", overflow="fold")
    for r in records:
        style = _STATE_STYLE.get(r.state, "")
        row = [
            r.worker,
            r.profile,
            f"[{style}]{r.state}[/]",
            str(r.pid or "-"),
            str(r.generation),
            str(r.prompts_served),
            _ms(r.last_latency_ms),
            _ms(r.p95_latency_ms),
            _bytes(r.rss_bytes),
            f"{max(0.0, now - r.updated_at):.1f}s",
        ]
        if sessions:
            row.append(r.session or "-")
        if errors:
            row.append(r.last_error or "")
        table.add_row(*row)
    return table


def results_table(rows: Iterable[tuple[str, PromptResult | Exception]]) -> Table:
    """One row per (prompt, result or error)."""
    table = Table(title="results", title_justify="left")
    for col in ("prompt", "ok", "output", "worker", "gen", "ms"):
        table.add_column(col, overflow="fold")
    for text, res in rows:
        if isinstance(res, Exception):
            table.add_row(text, "[red]error[/]", f"{type(res).__name__}: {res}", "-", "-", "-")
        else:
            table.add_row(
                text,
                "[green]yes[/]" if res.ok else "[red]no[/]",
                res.output,
                res.worker,
                str(res.generation),
                f"{res.duration_ms:.1f}",
            )
    return table


def profiles_table(profiles: Iterable[Profile]) -> Table:
    """One row per profile."""
    table = Table(title="profiles", title_justify="left")
    for col in ("name", "detector", "command", "description"):
        table.add_column(col, overflow="fold")
    for p in profiles:
        table.add_row(p.name, p.detector, " ".join(p.argv), p.description)
    return table
