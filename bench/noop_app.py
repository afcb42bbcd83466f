"""A bare Celery app with one no-op task, configured like the fleet (the baseline)."""

from __future__ import annotations

from celery import Celery

from toolfleet.broker import celery_config
from toolfleet.settings import Settings

__all__ = ["app", "noop"]

app = Celery("bench-noop", set_as_current=False)
app.conf.update(celery_config(Settings.from_env()))


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    """Do nothing: what Celery alone costs."""
