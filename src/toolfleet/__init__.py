"""toolfleet: persistent interactive command-line tools behind Celery workers."""

from ._version import __version__
from .errors import (
    ConfigError,
    IncompleteInput,
    NoWorkers,
    PromptRejected,
    RedisUnavailable,
    ResultTimeout,
    SessionLost,
    ToolCrashed,
    ToolError,
    ToolfleetError,
    ToolTimeout,
    UnknownProfile,
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
    "RedisUnavailable",
    "ResultTimeout",
    "Session",
    "SessionLost",
    "Settings",
    "ToolCrashed",
    "ToolError",
    "ToolTimeout",
    "ToolfleetError",
    "UnknownProfile",
    "WorkerLost",
    "__version__",
    "load_profiles",
]
