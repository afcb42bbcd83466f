"""``python -m toolfleet``: the command line."""

from .cli import main

main()
