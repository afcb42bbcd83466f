"""JSON-RPC over an agent's stdio, for the protocols built on it (ACP, Codex app-server):
numbered requests, and a call that waits for its own response."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from toolfleet.errors import ToolCrashed, ToolTimeout
from toolfleet.tool.agent_protocol import AgentProtocol

if TYPE_CHECKING:
    from toolfleet.tool.agent import AgentInstance

__all__ = ["JsonRpcProtocol"]


class JsonRpcProtocol(AgentProtocol):
    """An agent protocol whose messages are JSON-RPC requests and responses."""

    #: fields every message carries (ACP: ``{"jsonrpc": "2.0"}``; Codex leaves it out)
    envelope: ClassVar[Mapping[str, str]] = {}

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def restart_ids(self) -> None:
        """Number requests from 1 again (a new process)."""
        self._ids = itertools.count(1)

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A new request (its ``id`` the next number)."""
        return {**self.envelope, "id": next(self._ids), "method": method, "params": params}

    def notification(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A message that wants no response."""
        message: dict[str, Any] = {**self.envelope, "method": method}
        if params is not None:
            message["params"] = params
        return message

    def call(
        self, agent: AgentInstance, method: str, params: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        """Send a request and wait for its result (messages meanwhile are dropped);
        ToolCrashed for an error response, ToolTimeout at ``deadline``."""
        request = self.request(method, params)
        agent.send(request)
        while True:
            try:
                message = agent.receive(deadline)
            except ToolTimeout:
                raise ToolTimeout(f"no answer to {method}") from None
            if message.get("id") == request["id"] and "method" not in message:
                if "error" in message:
                    raise ToolCrashed(f"{method} failed: {json.dumps(message['error'])[:300]}")
                result = message.get("result")
                return result if isinstance(result, dict) else {}
