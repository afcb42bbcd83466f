"""The model gateway: the agents' route to their provider, governed fleet-wide."""

from toolfleet.gateway.governor import Governor, upstream_stats
from toolfleet.gateway.meter import Meter
from toolfleet.gateway.proxy import Gateway
from toolfleet.gateway.upstream import Upstream

__all__ = ["Gateway", "Governor", "Meter", "Upstream", "upstream_stats"]
