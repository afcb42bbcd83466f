"""The model gateway: the agents' route to their provider, governed fleet-wide.

``upstream`` (the configuration) needs only pydantic; ``proxy``, ``governor`` and
``meter`` are the worker's (the ``worker`` extra)."""

__all__: list[str] = []
