"""Rich tables for the command line: fleet status, prompt results, profiles."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, JustifyMethod
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from toolfleet.models import InstanceHealth, PromptResult
from toolfleet.profiles import Profile

__all__ = [
    "ESSENTIAL_COLUMNS",
    "OPTIONAL_COLUMNS",
    "gateway_lines",
    "profiles_table",
    "results_table",
    "status_plain",
    "status_table",
]

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


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNLIMITED = 1_000_000  # a console width nothing reaches, for measuring


def _age(now: float, since: float | None) -> str:
    return "-" if since is None else f"{max(0.0, now - since):.1f}s"


def _one_line(text: str) -> str:
    """``text`` on one line: line breaks, tabs and other control characters escaped."""
    text = text.replace("\r\n", "\n")
    return "".join(
        _ESCAPES.get(ch, f"\\x{ord(ch):02x}") if ord(ch) < 32 or ord(ch) == 127 else ch
        for ch in text
    )


@dataclass(frozen=True)
class _Column:
    header: str
    value: Callable[[InstanceHealth, float], str]
    justify: JustifyMethod = "left"


#: every status column, in display order
_COLUMNS: tuple[_Column, ...] = (
    _Column("worker", lambda r, now: _one_line(r.worker)),
    _Column("profile", lambda r, now: _one_line(r.profile)),
    _Column("state", lambda r, now: r.state),
    _Column("session", lambda r, now: _one_line(r.session or "-")),
    _Column("prompt", lambda r, now: _age(now, r.busy_since), "right"),
    _Column("pid", lambda r, now: "-" if r.pid is None else str(r.pid), "right"),
    _Column("gen", lambda r, now: str(r.generation), "right"),
    _Column("served", lambda r, now: str(r.prompts_served), "right"),
    _Column("last ms", lambda r, now: _ms(r.last_latency_ms), "right"),
    _Column("p95 ms", lambda r, now: _ms(r.p95_latency_ms), "right"),
    _Column("rss", lambda r, now: _bytes(r.rss_bytes), "right"),
    _Column("beat", lambda r, now: _age(now, r.updated_at), "right"),
    _Column("sandbox", lambda r, now: _one_line(r.sandbox)),
    _Column("last error", lambda r, now: _one_line(r.last_error or "-")),
)
#: the columns status_table always shows whole, however narrow the terminal
ESSENTIAL_COLUMNS: tuple[str, ...] = ("worker", "state", "session", "prompt")
#: the other columns, in the order status_table adds them while the table still fits
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "gen",
    "rss",
    "profile",
    "served",
    "last ms",
    "p95 ms",
    "beat",
    "pid",
    "sandbox",
    "last error",
)
_TITLE = "toolfleet status"


def _cells(records: list[InstanceHealth], now: float) -> dict[str, list[str]]:
    return {c.header: [c.value(r, now) for r in records] for c in _COLUMNS}


def _build(
    records: list[InstanceHealth],
    cells: dict[str, list[str]],
    shown: Collection[str],
    *,
    fold_error: bool = False,
) -> Table:
    """The table of the columns in ``shown`` (in display order), none of them squeezable.

    Only with ``fold_error`` may the last error column wrap (never narrower than its
    header); every other column is no_wrap and is laid out at its content width as long
    as the table gets its natural width (see :func:`_width_of`).
    """
    table = Table(title=_TITLE, title_justify="left")
    columns = [c for c in _COLUMNS if c.header in shown]
    for c in columns:
        fold = fold_error and c.header == "last error"
        table.add_column(
            c.header,
            justify=c.justify,
            no_wrap=not fold,
            overflow="fold" if fold else "ellipsis",
            min_width=cell_len(c.header) if fold else None,
        )
    for i, r in enumerate(records):
        table.add_row(
            *(
                Text(cells[c.header][i], style=_STATE_STYLE.get(r.state, ""))
                if c.header == "state"
                else Text(cells[c.header][i])
                for c in columns
            )
        )
    return table


def _width_of(table: Table) -> int:
    """Columns ``table`` takes when nothing constrains it (padding and borders included)."""
    console = Console(width=_UNLIMITED, file=io.StringIO())
    return Measurement.get(console, console.options, table).maximum


def _not_narrower_than(table: Table, width: int, needed: int) -> Table:
    """``table``, laid out at ``needed`` columns when ``width`` is too few for it.

    A table with a fixed width is rendered at that width whatever the console's, so rich
    never narrows (ellipsises) a column to fit; the lines come out longer than ``width``
    instead (print with ``crop=False`` and the terminal wraps them).
    """
    if needed > width:
        table.width = needed
    return table


def status_table(
    records: Iterable[InstanceHealth],
    now: float | None = None,
    *,
    width: int | None = None,
    wide: bool = False,
) -> Table:
    """One row per instance, fitted to ``width`` columns (default: the terminal's).

    The :data:`ESSENTIAL_COLUMNS` are always there and never cut (nor is the session
    column left out while no session is open, so the layout does not jump); should they
    alone not fit, the table comes out wider than ``width``. The :data:`OPTIONAL_COLUMNS`
    follow, in that order, while the table still fits ``width``: each is shown whole or
    not at all, and a caption names those left out. ``wide`` shows every column whatever
    the width: only the last error may then wrap, and the table may be wider than ``width``.
    """
    now = time.time() if now is None else now
    records = list(records)
    cells = _cells(records, now)
    width = Console().width if width is None else width
    if wide:
        table = _build(records, cells, [c.header for c in _COLUMNS], fold_error=True)
        error = "last error"
        squeezable = max(cell_len(v) for v in [error, *cells[error]]) - cell_len(error)
        return _not_narrower_than(table, width, _width_of(table) - squeezable)
    shown = list(ESSENTIAL_COLUMNS)
    for header in OPTIONAL_COLUMNS:
        if _width_of(_build(records, cells, [*shown, header])) > width:
            break
        shown.append(header)
    table = _build(records, cells, shown)
    hidden = [h for h in OPTIONAL_COLUMNS if h not in shown]
    if hidden:
        table.caption = f"not shown: {', '.join(hidden)} (toolfleet status --wide shows all)"
        table.caption_justify = "left"
    return _not_narrower_than(table, width, _width_of(table))


def status_plain(records: Iterable[InstanceHealth], now: float | None = None) -> str:
    """Every column, aligned with spaces under a header line: for pipes and files.

    No box drawing, colour or markup, and nothing is ever cut: a value as long as it is
    keeps its row (line breaks inside it are escaped as ``\\n``; the last error comes
    last, so a long one does not push the other columns apart).
    """
    now = time.time() if now is None else now
    records = list(records)
    cells = _cells(records, now)
    widths = {
        c.header: max([cell_len(c.header), *(cell_len(v) for v in cells[c.header])])
        for c in _COLUMNS
    }

    def line(values: list[tuple[_Column, str]]) -> str:
        parts = []
        for c, v in values:
            pad = " " * (widths[c.header] - cell_len(v))
            parts.append(pad + v if c.justify == "right" else v + pad)
        return "  ".join(parts).rstrip()

    lines = [line([(c, c.header) for c in _COLUMNS])]
    lines += [line([(c, cells[c.header][i]) for c in _COLUMNS]) for i in range(len(records))]
    return "\n".join(lines)


def _short(count: float) -> str:
    """12 -> '12', 12345 -> '12.3k', 2_500_000 -> '2.5M'."""
    for size, unit in ((1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return f"{count:g}"


def gateway_lines(stats: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Two lines per upstream of the model gateways (under 80 columns for short names):
    calls, what waits and flies now; then what was hidden from the agents and spent."""
    lines = []
    for name, f in sorted(stats.items()):
        head = (
            f"gateway {name}: {f['requests']:g} calls, {f['waiting']:g} waiting, "
            f"{f['inflight']:g} in flight"
        )
        if f["ceiling"]:
            head += f" (ceiling {f['ceiling']:.1f})"
        tail = (
            f"  {f['throttled']:g} 429s hidden, {f['retries']:g} retries, "
            f"tokens {_short(f['sent'])}/{_short(f['received'])}, cost {f['cost']:.4f}"
        )
        if f["quota_exhausted"]:
            tail += ", QUOTA EXHAUSTED"
        lines += [head, tail]
    return lines


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
