"""toolfleet: persistent interactive command-line tools behind Celery workers."""

from toolfleet._version import __version__
from toolfleet.client.fleet import Fleet, PromptHandle
from toolfleet.client.sessions import Session
from toolfleet.errors import (
    BudgetSpent,
    CheckFailed,
    ConfigError,
    IncompleteInput,
    NoWorkers,
    PromptCancelled,
    PromptRejected,
    ProviderQuotaExhausted,
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
from toolfleet.models import InstanceHealth, PromptResult
from toolfleet.profiles import Profile, load_profiles
from toolfleet.settings import Settings

__all__ = [
    "BudgetSpent",
    "CheckFailed",
    "ConfigError",
    "Fleet",
    "IncompleteInput",
    "InstanceHealth",
    "NoWorkers",
    "Profile",
    "PromptCancelled",
    "PromptHandle",
    "PromptRejected",
    "PromptResult",
    "ProviderQuotaExhausted",
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
