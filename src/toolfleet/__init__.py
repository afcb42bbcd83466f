"""toolfleet: persistent interactive command-line tools behind Celery workers."""

from ._version import __version__
from .errors import (
    ConfigError,
    IncompleteInput,
    NoWorkers,
    PromptRejected,
    ResultTimeout,
    SessionLost,
    ToolCrashed,
    ToolfleetError,
    ToolTimeout,
    WorkerLost,
)
from .models import InstanceHealth, PromptResult
from .producer import Fleet, PromptHandle
from .profiles import Profile, load_profiles
from .sessions import Session
from .settings import Settings

__all__ = [
    "ConfigError",
    "Fleet",
    "IncompleteInput",
    "InstanceHealth",
    "NoWorkers",
    "Profile",
    "PromptHandle",
    "PromptRejected",
    "PromptResult",
    "ResultTimeout",
    "Session",
    "SessionLost",
    "Settings",
    "ToolCrashed",
    "ToolTimeout",
    "ToolfleetError",
    "WorkerLost",
    "__version__",
    "load_profiles",
]
