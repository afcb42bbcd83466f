"""The persistent tool instance: pty driver, end-of-response strategies, fake. No Celery."""

from toolfleet.tool.detect import Detector, Marker, Quiescence, Reply, Sentinel
from toolfleet.tool.fake import FakeInstance
from toolfleet.tool.instance import Answer, ToolInstance, ToolSnapshot

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
