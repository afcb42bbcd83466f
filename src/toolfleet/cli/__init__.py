"""The command line: ``toolfleet`` commands, map's progress and summary, tables, local fleets."""

from toolfleet.cli.commands import cli, main

__all__ = ["cli", "main"]
