"""The persistent tool instance: pty driver, end-of-response strategies, fake. No Celery."""

from .detect import Detector, Marker, Quiescence, Reply, Sentinel
from .fake import FakeInstance
from .instance import Answer, ToolInstance, ToolSnapshot

__all__ = [
    "Answer",
    "Detector",
    "FakeInstance",
    "Marker",
    "Quiescence",
    "Reply",
    "Sentinel",
    "ToolInstance",
    "ToolSnapshot",
]
