"""The producer side: Fleet, sessions and leases, bulk runs. Imports no worker or tool code."""

__all__: list[str] = []
