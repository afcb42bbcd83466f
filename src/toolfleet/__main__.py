"""``python -m toolfleet``: the command line."""

from toolfleet.cli.commands import main

main()
