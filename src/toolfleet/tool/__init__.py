"""The persistent tool instance: pty driver, end-of-response strategies, fake. No Celery."""

from toolfleet.tool.detect import Detector, Marker, Quiescence, Reply, Sentinel
from toolfleet.tool.fake import FakeInstance
from toolfleet.tool.instance import ToolInstance
from toolfleet.tool.interface import Answer, Instance, ToolSnapshot

__all__ = [
    "Answer",
    "Detector",
    "FakeInstance",
    "Instance",
    "Marker",
    "Quiescence",
    "Reply",
    "Sentinel",
    "ToolInstance",
    "ToolSnapshot",
]
