"""Worker side: the bootstep, supervision, heartbeat and remote-control commands."""

from .heartbeat import Heartbeat
from .supervisor import Supervisor

__all__ = ["Heartbeat", "Supervisor"]
