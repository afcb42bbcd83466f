"""What an agent's wire protocol is to its instance: messages out, a turn's record in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from toolfleet.models import Usage

if TYPE_CHECKING:
    from toolfleet.tool.agent import AgentInstance

__all__ = ["AgentProtocol", "Turn"]


class Turn:
    """What one prompt produced so far: text, tool calls, and (at its end) the result."""

    def __init__(self) -> None:
        self.text: list[str] = []
        #: text of the message the agent is writing now, as it streams (a protocol that
        #: then sends the whole message clears it and adds the message to ``text``)
        self.live: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.done = False
        self.ok = True
        self.output: str | None = None
        self.usage: Usage | None = None

    @property
    def so_far(self) -> str:
        return "".join(self.text) + "".join(self.live)


class AgentProtocol(ABC):
    """One agent's wire protocol: what to send, and how to read what comes back."""

    def prepare(self, instance_dir: str, env: dict[str, str]) -> None:  # noqa: B027
        """Before the process starts (``env``: its environment): files the agent needs in
        its private directory. Nothing by default."""

    @abstractmethod
    def handshake(self, agent: AgentInstance, deadline: float) -> None:
        """After the process started: whatever the protocol needs before a prompt."""

    @abstractmethod
    def prompt(self, text: str) -> list[dict[str, Any]]:
        """The messages that send ``text`` as the next prompt of the conversation."""

    @abstractmethod
    def feed(self, message: dict[str, Any], turn: Turn) -> list[dict[str, Any]]:
        """Take one message of the agent into ``turn`` (setting ``turn.done`` at its end);
        the messages to send back (answers to the agent's own requests)."""

    @abstractmethod
    def interrupt(self) -> list[dict[str, Any]]:
        """The messages that stop the running turn."""

    def reset(self, agent: AgentInstance, deadline: float) -> bool:
        """Start a new conversation in the same process; False when the protocol cannot
        (the instance is then restarted)."""
        return False
