"""Claude Code's stream-json protocol: one user message a line in, events out, the
turn's end a ``result`` event carrying the answer, usage and the session's cost."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from toolfleet.errors import ToolCrashed
from toolfleet.models import Usage
from toolfleet.tool.agent_protocol import AgentProtocol, Turn

if TYPE_CHECKING:
    from toolfleet.tool.agent import AgentInstance

__all__ = ["ClaudeStreamJson"]

#: how long a just-started Claude Code must stay up to count as started (it says
#: nothing before its first prompt)
_SETTLE = 0.5


class ClaudeStreamJson(AgentProtocol):
    """``claude -p --input-format stream-json --output-format stream-json --verbose
    --include-partial-messages``: the text of a message streams as ``stream_event``
    deltas, then comes whole as an ``assistant`` message."""

    def __init__(self) -> None:
        self._cost_so_far = 0.0  # total_cost_usd is the process's running total

    def handshake(self, agent: AgentInstance, deadline: float) -> None:
        self._cost_so_far = 0.0
        end = min(deadline, time.monotonic() + _SETTLE)
        while time.monotonic() < end:
            if not agent.alive():
                raise ToolCrashed(f"exited at start ({agent._status()}); see agent.log")
            time.sleep(0.05)

    def prompt(self, text: str) -> list[dict[str, Any]]:
        content = [{"type": "text", "text": text}]
        return [{"type": "user", "message": {"role": "user", "content": content}}]

    def reset(self, agent: AgentInstance, deadline: float) -> bool:
        """``/clear``: Claude Code starts a new session in the same process."""
        for message in self.prompt("/clear"):
            agent.send(message)
        turn = Turn()
        while not turn.done:
            self.feed(agent.receive(deadline), turn)
        return turn.ok

    def interrupt(self) -> list[dict[str, Any]]:
        request = {"subtype": "interrupt"}
        return [{"type": "control_request", "request_id": uuid.uuid4().hex, "request": request}]

    def feed(self, message: dict[str, Any], turn: Turn) -> list[dict[str, Any]]:
        kind = message.get("type")
        if kind == "stream_event":  # --include-partial-messages: text as it is written
            event = message.get("event") or {}
            delta = event.get("delta") or {}
            if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
                turn.live.append(str(delta.get("text", "")))
        elif kind == "assistant":
            turn.live.clear()  # the whole message: its text replaces the streamed pieces
            for block in _blocks(message):
                if block.get("type") == "text":
                    turn.text.append(str(block.get("text", "")))
                elif block.get("type") == "tool_use":
                    turn.tool_calls.append(
                        {
                            "id": block.get("id"),
                            "name": block.get("name"),
                            "input": block.get("input"),
                        }
                    )
        elif kind == "user":  # the results of the agent's tool calls
            for block in _blocks(message):
                if block.get("type") == "tool_result":
                    _attach_result(turn, block)
        elif kind == "result":
            turn.done = True
            turn.ok = not message.get("is_error", False)
            result = message.get("result")
            turn.output = str(result) if isinstance(result, str) else turn.so_far
            turn.usage = self._usage(message)
        return []

    def _usage(self, result: dict[str, Any]) -> Usage | None:
        usage = result.get("usage")
        if not isinstance(usage, dict):
            return None
        sent = sum(
            int(usage.get(k) or 0)
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        total = float(result.get("total_cost_usd") or 0.0)
        cost = max(0.0, total - self._cost_so_far)
        self._cost_so_far = max(self._cost_so_far, total)
        return Usage(sent=sent, received=int(usage.get("output_tokens") or 0), cost=round(cost, 10))


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = (message.get("message") or {}).get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _attach_result(turn: Turn, block: dict[str, Any]) -> None:
    """Put a tool result on the call it answers (its text, cut to 2,000 characters)."""
    content = block.get("content")
    if isinstance(content, list):
        content = "\n".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    for call in turn.tool_calls:
        if call.get("id") == block.get("tool_use_id"):
            call["result"] = str(content)[:2000]
            call["error"] = bool(block.get("is_error", False))
