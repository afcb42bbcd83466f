"""``toolfleet map``: a bulk run with a progress bar, a journal and a summary table."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console

from toolfleet.cli.changes import refuse_dirty, worktree_root
from toolfleet.cli.common import fail
from toolfleet.cli.landing import Landing
from toolfleet.cli.map_report import drive, failures_table, spent, summary_line, summary_table
from toolfleet.client.attempts import local_profile
from toolfleet.client.changes import ApplyResult
from toolfleet.client.fleet import Fleet
from toolfleet.client.items import MapItem, MapOutcome, expand_steps, expand_template, read_jsonl
from toolfleet.client.journal import Journal
from toolfleet.client.unavailable import ensure_reachable
from toolfleet.client.verify import CheckSpec
from toolfleet.errors import ToolfleetError

__all__ = ["map_command"]


def _items(
    files: Sequence[str],
    template: str | None,
    steps: Sequence[str],
    jsonl: TextIO | None,
    err: Console,
    root: Path | None = None,
) -> list[MapItem]:
    if sum((template is not None, bool(steps), jsonl is not None)) != 1:
        raise click.UsageError("give one of --template or --step with FILES, or --jsonl")
    if jsonl is not None:
        if files:
            raise click.UsageError("FILES go with --template, not with --jsonl")
        try:
            return read_jsonl(jsonl, source=getattr(jsonl, "name", "<jsonl>"))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--jsonl") from None
    option = "--template" if template is not None else "--step"
    if not files:
        raise click.UsageError(f"{option} needs FILES")
    paths: dict[str, None] = {}
    for name in files:  # absolute: the workers' working directory is not ours
        path = os.path.abspath(name)
        if root is not None:  # a worktree profile: relative to the repository's root
            path = os.path.relpath(path, root)
            if path.startswith(os.pardir):
                raise click.BadParameter(f"{name} is outside the repository {root}")
        paths.setdefault(path, None)
    if len(paths) < len(files):
        err.print(f"{len(files) - len(paths)} duplicate path(s) ignored")
    try:
        if template is not None:
            return expand_template(template, list(paths))
        return expand_steps(steps, list(paths))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _journal(path: Path | None, outcomes: list[MapOutcome], items: list[MapItem]) -> None:
    """Record a redo round's outcomes in the run's journal (after the first round's)."""
    if path is None:
        return
    digests = {item.key: item.digest for item in items}
    with Journal(path) as journal:
        for outcome in outcomes:
            journal.write(outcome, sha=digests.get(outcome.key))


def _check_workers(fleet: Fleet, profiles: set[str], err: Console) -> None:
    """Refuse unknown profiles and an unusable Redis at once; warn of idle profiles."""
    try:
        ensure_reachable(fleet.settings)
        for name in sorted(profiles):
            fleet.require_profile(name)
        if fleet.settings.heartbeat_interval == 0:
            return  # no health records to look at
        reporting = {p: fleet.status(p) for p in sorted(profiles)}
    except ToolfleetError as exc:
        fail(f"{type(exc).__name__}: {exc.message}")
        return
    for profile, records in reporting.items():
        if not records:
            err.print(
                f"[yellow]warning: no instance of profile {profile!r} is reporting; "
                "prompts wait in the queue until one starts (see toolfleet status)[/]"
            )


@click.command("map")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--profile",
    "-p",
    default=None,
    help="Profile of the prompts (needed unless every JSONL line names its own).",
)
@click.option(
    "--template",
    "-t",
    default=None,
    metavar="TEXT",
    help="The prompt for each FILE, with {path} (absolute), {name}, {stem}, {index}.",
)
@click.option(
    "--step",
    "-s",
    "steps",
    multiple=True,
    metavar="TEXT",
    help="One step of each FILE's item (repeat: the steps run in order on one instance "
    "the item holds; same fields as --template).",
)
@click.option(
    "--jsonl",
    type=click.File("r", encoding="utf-8"),
    default=None,
    help="Prompts, one JSON object a line ('-' reads stdin).",
)
@click.option(
    "--in-flight",
    "-j",
    "in_flight",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Messages outstanding at most (each carries --chunk prompts).",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=None,
    help="Prompts per message, run in order on one instance (default: the profile's: "
    "16 for the REPLs, 1 for aider and the agents).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Times to rerun an item that failed retryably (tool crashed or timed out, worker lost).",
)
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append each outcome to this JSONL file; a re-run skips items it records ok.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Deadline of each prompt inside its tool, s (default: the profile's).",
)
@click.option(
    "--result-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds to wait for one result (from its start, in a chunk) before counting "
    "its worker lost (default: twice the deadline + 30).",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="USD",
    help="Send nothing more once the cost the tools report (e.g. aider's) reaches this; "
    "behind a model gateway each item may spend only what is left of it.",
)
@click.option(
    "--item-budget",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="USD",
    help="What one item's model calls may cost (profiles with an upstream: the model "
    "gateway refuses the call that would pass it; the item fails with BudgetSpent).",
)
@click.option(
    "--check",
    "check_command",
    default=None,
    metavar="CMD",
    help="After each item's steps run CMD in its worktree (worktree profiles; same "
    "fields as --template; default: the profile's check): its change is ready only if "
    "CMD passed, else rejected and the item fails with CheckFailed.",
)
@click.option(
    "--check-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds the check may run (default: the profile's, 600).",
)
@click.option(
    "--repair",
    "repairs",
    type=click.IntRange(min=0),
    default=None,
    metavar="K",
    help="When the check fails, give the agent up to K repair steps carrying its "
    "output (the profile's 'repair' text), checking again after each.",
)
@click.option(
    "--apply",
    is_flag=True,
    help="Land each ok item's change (worktree profiles) on the branch checked out here "
    "as it completes, one at a time, checked once merged (with a check); what "
    "conflicts or breaks the check is redone on the new tip (--redo), else listed.",
)
@click.option(
    "--redo",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    metavar="K",
    help="With --apply: times an item whose change conflicted or broke the check once "
    "merged is run again from the branch's new tip.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print each outcome as a JSON line instead of the summary table.",
)
def map_command(
    files: tuple[str, ...],
    profile: str | None,
    template: str | None,
    steps: tuple[str, ...],
    jsonl: TextIO | None,
    in_flight: int,
    chunk: int | None,
    retries: int,
    journal: Path | None,
    timeout: float | None,
    result_timeout: float | None,
    budget: float | None,
    item_budget: float | None,
    check_command: str | None,
    check_timeout: float | None,
    repairs: int | None,
    apply: bool,
    redo: int,
    as_json: bool,
) -> None:
    """Run one prompt per FILE (--template), several (--step ...), or one per JSONL line.

    \b
      toolfleet map -p bash -t 'sed -i "1i # DOC_ID: {stem}" {path}' src/**/*.py
      toolfleet map -p aider -s '/add {path}' -s 'Add a DOC_ID header' -s '/drop {path}' *.py
      toolfleet map -p python --jsonl prompts.jsonl --journal done.jsonl

    Steps: each FILE's item holds one instance (a session) while its steps run in
    order; it fails at its first failing step, and a retry runs it whole on a reset
    instance.

    Template: {path} is the file's absolute path, {name} its name, {stem} its name
    without suffix, {index} its position (from 0). {path!q} is shell-quoted, {path!r}
    a Python string literal; other braces are left as they are.

    JSONL: {"key": ..., "text": ..., "profile": ..., "timeout": ...}; only "text" is
    required ("key" defaults to the line number).

    A progress bar shows done, failed, rate and ETA; a summary follows. With --journal
    each outcome is appended as it arrives, and running the same command again runs
    only the items not recorded ok. Ctrl-C stops: nothing new is sent, the prompts
    already sent (at most --in-flight messages) are waited for and recorded; a second Ctrl-C
    quits at once.

    Exit status: 0 when every item is ok, 1 when one failed (or a budget or the
    provider's quota stopped the run), 130 when interrupted.
    """
    err = Console(stderr=True, soft_wrap=True)  # messages are not wrapped (logs, grep)
    out = Console()
    root = worktree_root(profile)
    items = _items(files, template, steps, jsonl, err, root)
    if profile is None and any(it.profile is None for it in items):
        raise click.UsageError("--profile is needed (or a 'profile' on every JSONL line)")
    options = {
        "profile": profile,
        "in_flight": in_flight,
        "retries": retries,
        "timeout": timeout,
        "result_timeout": result_timeout,
        "budget": budget,
        "chunk": chunk,
        "item_budget": item_budget,
    }
    with Fleet.from_env() as fleet:
        _check_workers(fleet, {it.profile or profile or "" for it in items}, err)
        known = local_profile(fleet, profile) if profile else None
        try:
            spec = CheckSpec.of(known, check_command, check_timeout, repairs)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--check") from None
        if spec is not None and not (profile and fleet.uses_worktree(profile)):
            fail("--check needs a worktree profile (workspace = 'worktree'): it runs there")
        try:
            run = fleet.map(items, journal=journal, check=spec, **options)  # type: ignore[arg-type]
        except ToolfleetError as exc:
            fail(f"{type(exc).__name__}: {exc.message}")
            return
        except ValueError as exc:
            fail(str(exc))
            return
        if run.journal is not None and run.journal.skipped_lines:
            err.print(
                f"[yellow]{run.journal.skipped_lines} unreadable line(s) in {journal} "
                "skipped (a run that crashed mid-write)[/]"
            )
        if run.changed:
            err.print(
                f"[yellow]warning: {len(run.changed)} item(s) recorded ok in {journal} had "
                "another prompt text then; they are skipped (use a new journal to rerun)[/]"
            )
        if run.skipped:
            err.print(f"{len(run.skipped)} of {run.total} items already ok in {journal}")

        landing = None
        if apply:
            refuse_dirty()
            landing = Landing(fleet.changes, items, spec)
            if journal is not None:
                landing.resume(journal, err)

        def emit(outcome: MapOutcome) -> None:
            if landing is not None:
                landing.take(outcome)
            if as_json:
                click.echo(json.dumps(outcome.to_record(), ensure_ascii=False))

        try:
            outcomes, quit_now = drive(run, err, emit)
        finally:
            done = landing.settle() if landing is not None else ApplyResult()
        for round_ in range(1, redo + 1):
            if landing is None or not done.redo or run.stopped or quit_now:
                break
            anew = landing.redo_items(done)
            err.print(f"redo {round_}: {len(anew)} item(s) again from the branch's new tip")
            rerun = fleet.map(anew, check=spec, **options)  # type: ignore[arg-type]
            try:
                more, quit_now = drive(rerun, err, emit)
            finally:
                done = landing.settle()
            _journal(journal, more, anew)
            redone = {o.key for o in more}
            outcomes = [o for o in outcomes if o.key not in redone] + more
    applied = landing.result if landing is not None else ApplyResult()

    if as_json:
        err.print(summary_line(outcomes, run), highlight=False)
    else:
        out.print(summary_table(outcomes, run))
        failures = failures_table(outcomes)
        if failures is not None:
            out.print(failures)
    if run.abandoned:
        err.print(
            f"[yellow]{len(run.abandoned)} prompt(s) may still run on the workers; "
            "their outcomes are not recorded[/]"
        )
    if landing is not None:
        landing.report(err)
    if run.budget_reached:
        err.print(
            f"[yellow]budget reached: spent {spent(run)}; {len(run.cancelled)} item(s) not sent[/]"
        )
        sys.exit(1)
    if run.quota_exhausted is not None:
        again = "run the same command again" if journal else "use --journal next time"
        err.print(
            f"[yellow]quota exhausted: {run.quota_exhausted}; {len(run.cancelled)} item(s) "
            f"not run; {again} to run them once the quota is back[/]"
        )
        sys.exit(1)
    if run.stopped:
        again = "run the same command again" if journal else "use --journal next time"
        err.print(f"interrupted ({'quit' if quit_now else 'stopped'}); {again} to finish")
        sys.exit(130)
    if any(not o.ok for o in outcomes) or applied.redo:
        sys.exit(1)
