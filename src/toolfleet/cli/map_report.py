"""What ``toolfleet map`` shows: its progress bar (Ctrl-C aware), summary table and failures."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from toolfleet.client.bulk import MapRun
from toolfleet.client.items import MapOutcome

__all__ = ["drive", "failures_table", "progress_bar", "spent", "summary_line", "summary_table"]

#: failed items listed under the summary (all of them are in the journal / --json)
MAX_FAILURES_SHOWN = 20


def _failure_counts(outcomes: Sequence[MapOutcome]) -> Counter[str]:
    return Counter(o.error_type or "?" for o in outcomes if not o.ok)


def summary_table(outcomes: Sequence[MapOutcome], run: MapRun) -> Table:
    """Counts of one run: ok, failed by error type, retried, time, rate, per worker."""
    table = Table(title="toolfleet map", title_justify="left", show_header=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    ok = sum(1 for o in outcomes if o.ok)
    failures = _failure_counts(outcomes)
    table.add_row("items", str(run.total))
    if run.skipped:
        table.add_row("already ok in the journal", str(len(run.skipped)))
    table.add_row("[green]ok[/]", str(ok))
    table.add_row("[red]failed[/]" if failures else "failed", str(sum(failures.values())))
    for error_type, count in failures.most_common():
        table.add_row(f"  {error_type}", str(count))
    table.add_row("retried", str(run.retried))
    if run.cancelled:
        why = run.stop_reason
        table.add_row(f"[yellow]not run ({why})[/]", str(len(run.cancelled)))
    if run.abandoned:
        table.add_row("[yellow]left running, not recorded[/]", str(len(run.abandoned)))
    if run.usage is not None:
        table.add_row("tokens sent / received", f"{run.usage.sent} / {run.usage.received}")
        table.add_row("cost", spent(run))
    table.add_row("time", f"{run.elapsed:.2f} s")
    rate = len(outcomes) / run.elapsed if run.elapsed > 0 else 0.0
    table.add_row("prompts/s", f"{rate:.1f}")
    for worker, count in sorted(Counter(o.worker for o in outcomes if o.worker).items()):
        table.add_row(f"worker {worker}", str(count))
    return table


def failures_table(outcomes: Sequence[MapOutcome]) -> Table | None:
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return None
    title = "failed items"
    if len(failed) > MAX_FAILURES_SHOWN:
        title += f" (first {MAX_FAILURES_SHOWN} of {len(failed)})"
    table = Table(title=title, title_justify="left")
    for col in ("key", "error", "message", "tries"):
        table.add_column(col, overflow="fold")
    for o in failed[:MAX_FAILURES_SHOWN]:
        message = o.error or ""
        if o.result is not None and o.result.output:
            message += f": {o.result.output[-300:]}"
        table.add_row(o.key, o.error_type or "?", message, str(o.attempts))
    return table


def spent(run: MapRun) -> str:
    """The run's cost, and its budget when it has one."""
    cost = run.usage.cost if run.usage is not None else 0.0
    return f"{cost:.4f}" + (f" of {run.budget:g} budget" if run.budget is not None else "")


def summary_line(outcomes: Sequence[MapOutcome], run: MapRun) -> str:
    """The summary in one line (for --json, where stdout carries the outcomes)."""
    ok = sum(1 for o in outcomes if o.ok)
    failures = _failure_counts(outcomes)
    kinds = ", ".join(f"{k} {n}" for k, n in failures.most_common())
    rate = len(outcomes) / run.elapsed if run.elapsed > 0 else 0.0
    parts = [f"{run.total} items: {ok} ok, {sum(failures.values())} failed"]
    if kinds:
        parts[-1] += f" ({kinds})"
    if run.skipped:
        parts.append(f"{len(run.skipped)} already ok in the journal")
    parts.append(f"{run.retried} retried")
    if run.cancelled:
        why = run.stop_reason
        parts.append(f"{len(run.cancelled)} not run ({why})")
    if run.usage is not None:
        parts.append(f"{run.usage.sent}/{run.usage.received} tokens, cost {spent(run)}")
    if run.abandoned:
        parts.append(f"{len(run.abandoned)} left running, not recorded")
    return ", ".join(parts) + f"; {run.elapsed:.2f} s, {rate:.1f} prompts/s"


def progress_bar(label: Callable[[Task], Text], err: Console) -> Progress:
    """map's progress bar: label, bar, done/total, failed, rate, ETA and elapsed time."""
    return Progress(
        _Label(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        console=err,
    )


class _Label(ProgressColumn):
    """A text column computed at each refresh."""

    def __init__(self, render: Callable[[Task], Text]) -> None:
        super().__init__()
        self._render_label = render

    def render(self, task: Task) -> Text:
        return self._render_label(task)


class _SigintStops:
    """First Ctrl-C: ``run.stop()``; the next one raises KeyboardInterrupt as usual."""

    def __init__(self, run: MapRun) -> None:
        self.run = run
        self.previous: Any = None
        self.installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.run.stop()
        signal.signal(signal.SIGINT, self.previous)

    def __enter__(self) -> _SigintStops:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)
            if not callable(self.previous) and self.previous not in (
                signal.SIG_DFL,
                signal.SIG_IGN,
            ):
                self.previous = signal.default_int_handler
            signal.signal(signal.SIGINT, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)


def drive(
    run: MapRun, err: Console, emit: Callable[[MapOutcome], None]
) -> tuple[list[MapOutcome], bool]:
    """Iterate the run under a progress bar; (outcomes, quit at once on a second Ctrl-C)."""
    outcomes: list[MapOutcome] = []

    def label(_: Task) -> Text:
        if run.budget_reached or run.quota_exhausted is not None:
            return Text(f"{run.stop_reason}: finishing", "yellow")
        if run.stop_requested:
            return Text("stopping (Ctrl-C again quits)", "yellow")
        return Text("map")

    progress = progress_bar(label, err)
    failed = 0
    quit_now = False
    with progress, _SigintStops(run):
        task = progress.add_task("map", total=run.total - len(run.skipped), failed=0, rate="")

        def take(outcome: MapOutcome) -> None:
            nonlocal failed
            outcomes.append(outcome)
            emit(outcome)
            failed += not outcome.ok
            rate = f"{len(outcomes) / run.elapsed:.1f}/s" if run.elapsed > 0 else ""
            progress.update(task, advance=1, failed=failed, rate=rate)

        try:
            for outcome in run:
                take(outcome)
        except KeyboardInterrupt:  # the second Ctrl-C: keep what is done, leave the rest
            quit_now = True
            for outcome in run.close(wait=False):
                take(outcome)
    return outcomes, quit_now
