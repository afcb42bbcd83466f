"""The instance a profile's ``protocol`` calls for: a pty tool, or an agent over JSON lines."""

from __future__ import annotations

from toolfleet.profiles import Profile
from toolfleet.tool.acp import Acp, GeminiAcp
from toolfleet.tool.agent import AgentInstance
from toolfleet.tool.claude import ClaudeStreamJson
from toolfleet.tool.codex import CodexAppServer
from toolfleet.tool.instance import ToolInstance
from toolfleet.tool.interface import Instance

__all__ = ["make_instance"]


def make_instance(profile: Profile, *, cwd: str | None = None) -> Instance:
    """A new (not started) instance of ``profile``, working in ``cwd``."""
    if profile.protocol == "claude-stream-json":
        return AgentInstance(profile, ClaudeStreamJson(), cwd=cwd)
    if profile.protocol == "codex-app-server":
        return AgentInstance(profile, CodexAppServer(), cwd=cwd)
    if profile.protocol == "acp":
        protocol = GeminiAcp() if profile.argv[:1] and "gemini" in profile.argv[0] else Acp()
        return AgentInstance(profile, protocol, cwd=cwd)
    return ToolInstance(profile, cwd=cwd)
