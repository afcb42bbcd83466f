"""The Agent Client Protocol (JSON-RPC 2.0 over stdio): ``initialize``, ``session/new``,
then per prompt ``session/prompt``, whose response ends the turn; the agent's text and
tool calls come as ``session/update`` notifications. Gemini CLI speaks it (``--acp``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from toolfleet.errors import ToolCrashed
from toolfleet.models import Usage
from toolfleet.tool.agent_protocol import Turn
from toolfleet.tool.jsonrpc import JsonRpcProtocol

if TYPE_CHECKING:
    from toolfleet.tool.agent import AgentInstance

__all__ = ["Acp", "GeminiAcp"]

#: what the agent's turn may end with and still be an answer
_ANSWERED = ("end_turn", "max_tokens", "max_turn_requests")


class Acp(JsonRpcProtocol):
    """A client of any ACP agent: one session per process (a reset is a restart)."""

    envelope: ClassVar[Mapping[str, str]] = {"jsonrpc": "2.0"}

    def __init__(self) -> None:
        super().__init__()
        self.session_id = ""
        self._prompt_id = -1

    def handshake(self, agent: AgentInstance, deadline: float) -> None:
        self.restart_ids()
        capabilities: dict[str, Any] = {"fs": {"readTextFile": False, "writeTextFile": False}}
        self.call(
            agent,
            "initialize",
            {"protocolVersion": 1, "clientCapabilities": capabilities},
            deadline,
        )
        cwd = agent.cwd or os.getcwd()
        session = self.call(agent, "session/new", {"cwd": cwd, "mcpServers": []}, deadline)
        self.session_id = str(session.get("sessionId", ""))
        if not self.session_id:
            raise ToolCrashed("session/new gave no session id")

    def reset(self, agent: AgentInstance, deadline: float) -> bool:
        """A new ACP session (``session/new``) in the same process."""
        cwd = agent.cwd or os.getcwd()
        session = self.call(agent, "session/new", {"cwd": cwd, "mcpServers": []}, deadline)
        self.session_id = str(session.get("sessionId", "")) or self.session_id
        return bool(session.get("sessionId"))

    def prompt(self, text: str) -> list[dict[str, Any]]:
        params = {"sessionId": self.session_id, "prompt": [{"type": "text", "text": text}]}
        request = self.request("session/prompt", params)
        self._prompt_id = int(request["id"])
        return [request]

    def interrupt(self) -> list[dict[str, Any]]:
        cancel = {"sessionId": self.session_id}
        return [self.notification("session/cancel", cancel)]

    def feed(self, message: dict[str, Any], turn: Turn) -> list[dict[str, Any]]:
        method = message.get("method")
        if method == "session/update":
            _update(message.get("params", {}).get("update", {}), turn)
            return []
        if method is not None and "id" in message:  # the agent asks us something
            return [_reply(message)]
        if message.get("id") == self._prompt_id:
            turn.done = True
            if "error" in message:
                turn.ok = False
                turn.output = f"error: {json.dumps(message['error'])[:500]}"
                return []
            result = message.get("result") or {}
            turn.ok = result.get("stopReason") in _ANSWERED
            turn.usage = _usage(result)
        return []


class GeminiAcp(Acp):
    """Gemini CLI's ACP: its settings (API-key auth) written into the instance's HOME."""

    def prepare(self, instance_dir: str, env: dict[str, str]) -> None:
        settings = os.path.join(instance_dir, ".gemini", "settings.json")
        if not os.path.exists(settings):
            os.makedirs(os.path.dirname(settings), exist_ok=True)
            with open(settings, "w", encoding="utf-8") as fh:
                json.dump({"security": {"auth": {"selectedType": "gemini-api-key"}}}, fh)


def _update(update: dict[str, Any], turn: Turn) -> None:
    kind = update.get("sessionUpdate")
    if kind == "agent_message_chunk":
        content = update.get("content") or {}
        if content.get("type") == "text":
            turn.text.append(str(content.get("text", "")))
    elif kind == "tool_call":
        turn.tool_calls.append(
            {
                "id": update.get("toolCallId"),
                "name": update.get("title") or update.get("kind"),
                "input": update.get("rawInput"),
            }
        )
    elif kind == "tool_call_update":
        for call in turn.tool_calls:
            if call.get("id") == update.get("toolCallId"):
                status = update.get("status")
                if status in ("completed", "failed"):
                    call["error"] = status == "failed"
                    call["result"] = json.dumps(update.get("content") or update.get("rawOutput"))[
                        :2000
                    ]


def _reply(request: dict[str, Any]) -> dict[str, Any]:
    """Answer the agent's request: allow a permission once; anything else is refused."""
    if request.get("method") == "session/request_permission":
        options = request.get("params", {}).get("options", [])
        allow = next(
            (o for o in options if str(o.get("kind", "")).startswith("allow")),
            options[0] if options else {"optionId": "allow"},
        )
        outcome = {"outcome": "selected", "optionId": allow.get("optionId")}
        return {"jsonrpc": "2.0", "id": request["id"], "result": {"outcome": outcome}}
    error = {"code": -32601, "message": f"{request.get('method')} is not offered"}
    return {"jsonrpc": "2.0", "id": request["id"], "error": error}


def _usage(result: dict[str, Any]) -> Usage | None:
    counts = ((result.get("_meta") or {}).get("quota") or {}).get("token_count")
    if not isinstance(counts, dict):
        return None
    return Usage(
        sent=int(counts.get("input_tokens") or 0), received=int(counts.get("output_tokens") or 0)
    )
