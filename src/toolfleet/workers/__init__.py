"""The worker side: the prompt task, steps, supervision, heartbeat, sweep, remote control.

Import the modules themselves (``toolfleet.workers.supervisor``...): this package imports
nothing, so that a producer reaching ``toolfleet.workers.state`` loads no pty code.
"""

__all__: list[str] = []
