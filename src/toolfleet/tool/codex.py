"""Codex's app-server protocol (JSON-RPC over stdio): ``initialize``, ``thread/start``,
then per prompt ``turn/start``; items and deltas stream as notifications, and
``turn/completed`` ends the turn. Its configuration is written into the instance's
CODEX_HOME from the worker's environment."""

from __future__ import annotations

import json
import os
import shutil
from typing import TYPE_CHECKING, Any

from toolfleet.errors import ToolCrashed
from toolfleet.models import Usage
from toolfleet.tool.agent_protocol import Turn
from toolfleet.tool.jsonrpc import JsonRpcProtocol

if TYPE_CHECKING:
    from toolfleet.tool.agent import AgentInstance

__all__ = ["CodexAppServer", "codex_config"]


def codex_config(env: dict[str, str]) -> str:
    """CODEX_HOME's config.toml for an unattended agent: no approvals, full access to its
    worktree, no analytics, no shell snapshot, no login shell; the model
    (``CODEX_MODEL``) and, with ``OPENAI_BASE_URL``, an OpenAI-compatible endpoint
    (Responses API) keyed by ``OPENAI_API_KEY``."""
    # commands run in the instance's environment, not a login shell's: /etc/profile
    # sets PATH afresh (Debian's does), dropping the profile's, and costs CPU a command
    lines = [
        'approval_policy = "never"',
        'sandbox_mode = "danger-full-access"',
        "allow_login_shell = false",
    ]
    if env.get("CODEX_MODEL"):
        lines.append(f"model = {json.dumps(env['CODEX_MODEL'])}")
    base = env.get("OPENAI_BASE_URL")
    if base:
        lines += [
            'model_provider = "endpoint"',
            "",
            "[model_providers.endpoint]",
            'name = "endpoint"',
            f"base_url = {json.dumps(base)}",
            'env_key = "OPENAI_API_KEY"',
            'wire_api = "responses"',
        ]
    # a shell snapshot runs a login shell and five helpers at every new thread, that is
    # at every session of a fleet (30 ms of CPU an item), to save login shells that
    # toolfleet's instances do not start
    lines += ["", "[features]", "shell_snapshot = false"]
    lines += ["", "[analytics]", "enabled = false", ""]
    return "\n".join(lines)


class CodexAppServer(JsonRpcProtocol):
    """``codex app-server``: one conversation (thread) at a time; a reset starts a new
    one in the same process."""

    def __init__(self) -> None:
        super().__init__()
        self.thread_id = ""
        self.turn_id = ""
        self._start_id = -1

    def prepare(self, instance_dir: str, env: dict[str, str]) -> None:
        home = env.get("CODEX_HOME") or os.path.join(instance_dir, "codex")
        os.makedirs(home, exist_ok=True)
        given = env.get("CODEX_CONFIG")  # a config.toml of one's own, copied as is
        target = os.path.join(home, "config.toml")
        if given:
            shutil.copyfile(given, target)
        else:
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(codex_config(env))

    def handshake(self, agent: AgentInstance, deadline: float) -> None:
        self.restart_ids()
        info = {"name": "toolfleet", "version": "1"}
        self.call(agent, "initialize", {"clientInfo": info}, deadline)
        agent.send(self.notification("initialized"))
        thread = self.call(agent, "thread/start", _thread(agent), deadline).get("thread") or {}
        self.thread_id = str(thread.get("id", ""))
        if not self.thread_id:
            raise ToolCrashed("thread/start gave no thread id")

    def reset(self, agent: AgentInstance, deadline: float) -> bool:
        """A new thread (``thread/start``) in the same process."""
        thread = self.call(agent, "thread/start", _thread(agent), deadline).get("thread") or {}
        self.thread_id = str(thread.get("id", "")) or self.thread_id
        return bool(thread.get("id"))

    def prompt(self, text: str) -> list[dict[str, Any]]:
        params = {"threadId": self.thread_id, "input": [{"type": "text", "text": text}]}
        request = self.request("turn/start", params)
        self._start_id = int(request["id"])
        self.turn_id = ""
        return [request]

    def interrupt(self) -> list[dict[str, Any]]:
        params = {"threadId": self.thread_id, "turnId": self.turn_id}
        return [self.request("turn/interrupt", params)]

    def feed(self, message: dict[str, Any], turn: Turn) -> list[dict[str, Any]]:
        method = message.get("method")
        params = message.get("params") or {}
        if method is None:
            if message.get("id") == self._start_id:
                started = (message.get("result") or {}).get("turn") or {}
                self.turn_id = str(started.get("id", ""))
                if "error" in message:
                    turn.done, turn.ok = True, False
                    turn.output = f"error: {json.dumps(message['error'])[:500]}"
            return []
        if "id" in message:  # the server asks us (approvals): yes to its own sandbox
            return [{"id": message["id"], "result": {"decision": "accept"}}]
        if method == "item/agentMessage/delta":
            turn.text.append(str(params.get("delta", "")))
        elif method == "item/completed":
            _completed(params.get("item") or {}, turn)
        elif method == "thread/tokenUsage/updated":
            last = (params.get("tokenUsage") or {}).get("last") or {}
            turn.usage = Usage(
                sent=int(last.get("inputTokens") or 0), received=int(last.get("outputTokens") or 0)
            )
        elif method == "turn/completed":
            done = params.get("turn") or {}
            turn.done = True
            turn.ok = done.get("status") == "completed"
        return []


def _thread(agent: AgentInstance) -> dict[str, Any]:
    """``thread/start``'s parameters: the instance's cwd, no approvals, and an ephemeral
    thread. A fleet's conversation lives as long as its lease and is never resumed from
    disk (a restart loses the session), so the thread keeps no rollout file: without
    one, codex neither grows the instance's home by a file a session nor asks git for
    the checkout's branch, commit and remotes at every thread and turn (12 git
    processes an item in a checkout, 4 without)."""
    return {
        "cwd": agent.cwd or os.getcwd(),
        "approvalPolicy": "never",
        "sandbox": "danger-full-access",
        "ephemeral": True,
    }


def _completed(item: dict[str, Any], turn: Turn) -> None:
    kind = item.get("type")
    if kind == "agentMessage" and not turn.text:
        turn.text.append(str(item.get("text", "")))
    elif kind in ("commandExecution", "fileChange", "mcpToolCall"):
        turn.tool_calls.append(
            {
                "id": item.get("id"),
                "name": kind,
                "input": item.get("command") or item.get("changes") or item.get("arguments"),
                "result": str(item.get("aggregatedOutput") or item.get("result") or "")[:2000],
                "error": item.get("status") not in ("completed", None)
                or (item.get("exitCode") not in (0, None)),
            }
        )
