"""``toolfleet changes``: review and apply what worktree workspaces changed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
from rich.table import Table

from toolfleet.cli.common import connect, console, error, fail
from toolfleet.client.changes import ApplyResult
from toolfleet.client.mergequeue import MergeQueue
from toolfleet.errors import ToolfleetError
from toolfleet.gitops import git, is_url
from toolfleet.profiles import load_profiles
from toolfleet.settings import Settings

__all__ = ["changes", "refuse_dirty", "report_apply", "worktree_root"]


@click.group()
def changes() -> None:
    """Review and apply what sessions and items of worktree profiles changed.

    Each change is a branch toolfleet/changes/ID of the repository; apply merges it
    into a branch of the repository in the current directory.
    """


@changes.command("list")
@click.option("--pending", is_flag=True, help="Only changes neither applied nor discarded.")
def list_changes(pending: bool) -> None:
    """One row per change: id, state, worker, files, +/- lines, age."""
    try:
        with connect() as fleet:
            records = fleet.changes.records(pending=pending)
    except ToolfleetError as exc:
        error(exc)
    table = Table(title="toolfleet changes", title_justify="left")
    for col in ("id", "state", "worker", "files", "+", "-", "age"):
        table.add_column(col, no_wrap=col != "files")
    now = time.time()
    for r in records:
        files = ", ".join(r.files) if len(r.files) <= 3 else f"{len(r.files)} files"
        age = f"{now - r.created_at:.0f}s"
        table.add_row(
            r.id, r.state, r.worker, files or "-", str(r.insertions), str(r.deletions), age
        )
    console.print(table)
    if not records:
        console.print("no changes recorded (profiles with workspace = 'worktree' make them)")


@changes.command("show")
@click.argument("change_id")
def show(change_id: str) -> None:
    """The change's diff from its base (as recorded; the branch has all of it)."""
    try:
        with connect() as fleet:
            record = fleet.changes.get(change_id)
    except ToolfleetError as exc:
        error(exc)
    click.echo(f"# {record.id} on {record.branch} ({record.state}), base {record.base[:12]}")
    checked = record.check
    if checked is not None:
        verdict = "passed" if checked.passed else f"failed (exit status {checked.exit_status})"
        turns = f", after {record.repairs} repair turn(s)" if record.repairs else ""
        took = checked.duration_ms / 1000
        click.echo(f"# check `{checked.command}` {verdict} in {took:.1f} s{turns}")
        if not checked.passed:
            for line in checked.output.splitlines():
                click.echo(f"#   {line}")
    click.echo(record.patch, nl=False)
    if record.truncated:
        click.echo(f"# ... cut; see: git diff {record.base} {record.branch}")


@changes.command("apply")
@click.argument("change_ids", nargs=-1, required=True)
@click.option("--onto", default=None, help="Target branch (default: the one checked out).")
@click.option(
    "--check",
    "check_command",
    default=None,
    metavar="CMD",
    help="Merge one change at a time onto the tip and run CMD on the merged tree; the "
    "branch moves only if it passed.",
)
@click.option(
    "--check-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="Seconds the check may run.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Take changes their check rejected too (they failed it: look first).",
)
def apply(
    change_ids: tuple[str, ...],
    onto: str | None,
    check_command: str | None,
    check_timeout: float,
    force: bool,
) -> None:
    """Merge changes into a branch of the repository in the current directory.

    A conflicting change leaves the target as it was and lists its files; a checkout
    with uncommitted changes is refused; a change its check rejected is not taken
    without --force. One applier a branch at a time, fleet-wide. Exit status 1 if any
    change was not applied.
    """
    try:
        with connect() as fleet:
            queue = MergeQueue(
                fleet.changes,
                ".",
                onto,
                check=check_command,
                check_timeout=check_timeout,
                force=force,
            )
            result = queue.land(list(change_ids))
    except ToolfleetError as exc:
        error(exc)
    report_apply(result)
    if result.conflicts or result.broken or result.refused:
        raise SystemExit(1)


@changes.command("discard")
@click.argument("change_ids", nargs=-1, required=True)
def discard(change_ids: tuple[str, ...]) -> None:
    """Delete the changes' branches and mark them discarded."""
    try:
        with connect() as fleet:
            for change_id in change_ids:
                fleet.changes.discard(change_id)
                click.echo(f"discarded {change_id}")
    except ToolfleetError as exc:
        error(exc)


def report_apply(result: ApplyResult) -> None:
    """One line per change applied, empty or conflicting."""
    for change_id in result.applied:
        click.echo(f"applied {change_id}")
    for change_id in result.already:
        click.echo(f"{change_id} is in the target already")
    for change_id in result.empty:
        click.echo(f"nothing to apply in {change_id} (it changed no file)")
    for change_id, why in result.refused.items():
        click.echo(f"refused: {change_id} not applied: {why}", err=True)
    for change_id, output in result.broken.items():
        last = (output.strip().splitlines() or [""])[-1]
        click.echo(
            f"broken: {change_id} fails the check once merged ({last}); not applied", err=True
        )
    for change_id, files in result.conflicts.items():
        click.echo(
            f"conflict: {change_id} not applied ({', '.join(files) or 'see git'}); "
            "the target branch is unchanged",
            err=True,
        )
    if not (result.applied or result.empty or result.conflicts or result.already):
        fail("nothing applied")


def worktree_root(profile: str | None) -> Path | None:
    """The repository root that {path} is relative to, for a worktree profile."""
    try:
        known = load_profiles(Settings.from_env().profiles).get(profile or "")
    except ToolfleetError:
        return None
    if known is None or known.workspace != "worktree":
        return None
    source = known.repository()
    repo = source if source and not is_url(source) else os.getcwd()
    try:
        return Path(git("rev-parse", "--show-toplevel", cwd=repo).strip())
    except (ToolfleetError, OSError) as exc:
        raise click.UsageError(f"profile {profile!r} works in worktrees of {repo}: {exc}") from None


def refuse_dirty() -> None:
    """--apply onto a checkout with uncommitted changes is refused before anything runs."""
    try:
        dirty = git("status", "--porcelain", "--untracked-files=no", cwd=".").strip()
    except ToolfleetError as exc:
        fail(f"--apply needs a git checkout here: {exc.message}")
    if dirty:
        fail("DirtyTarget: the checkout here has uncommitted changes; commit or stash them")
