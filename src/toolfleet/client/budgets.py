"""What an item of a map run may spend: its own budget, within what is left of the run's."""

from __future__ import annotations

from toolfleet.models import Usage

__all__ = ["budget_left"]


def budget_left(item: float | None, run: float | None, spent: Usage | None) -> float | None:
    """The least of ``item`` (one item's budget) and what is left of ``run`` (the run's)
    after ``spent``; None when neither is set. Kept by the model gateway during the item."""
    limits = [] if item is None else [item]
    if run is not None:
        used = spent.cost if spent is not None else 0.0
        limits.append(max(run - used, 1e-9))  # spent already: the next call is refused
    return min(limits) if limits else None
