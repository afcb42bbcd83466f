"""An agent spoken to in JSON lines over stdin/stdout: one process, many prompts, the end
of an answer the protocol's own event (the ``Instance`` interface, like ToolInstance)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from typing import Any

from toolfleet.errors import PromptCancelled, ToolCrashed, ToolTimeout
from toolfleet.parentdeath import die_with_parent
from toolfleet.profiles import Profile
from toolfleet.tool.agent_protocol import AgentProtocol, Turn
from toolfleet.tool.interface import Answer, ToolSnapshot, snapshot_of
from toolfleet.tool.sandbox import confine, sandbox_for
from toolfleet.tool.spawn import tool_env
from toolfleet.tool.terminal import AbortSignal
from toolfleet.validation import validate_prompt

__all__ = ["AgentInstance"]

log = logging.getLogger(__name__)


class AgentInstance:
    """A long-lived agent process speaking ``protocol`` over its stdin/stdout.

    Thread-safe; one prompt at a time. Its stderr goes to ``agent.log`` in its
    instance directory.
    """

    def __init__(
        self, profile: Profile, protocol: AgentProtocol, *, cwd: str | None = None
    ) -> None:
        self.profile = profile
        self.protocol = protocol
        self.cwd = cwd if cwd is not None else profile.cwd
        self.generation = 0
        self.prompts_served = 0
        self.last_error: str | None = None
        self.started_at = time.time()
        self._proc: subprocess.Popen[bytes] | None = None
        # read by the thread that holds the instance (no reader thread: a hand-over
        # between threads costs up to the interpreter's switch interval per message)
        self._buffer = bytearray()
        self._messages: deque[dict[str, Any]] = deque()
        self._eof = False
        self._wake = AbortSignal()  # wakes the reading thread for an abort
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._turn: Turn | None = None
        self._abort: tuple[str, str] | None = None
        self._latencies: deque[float] = deque(maxlen=200)
        self._instance_dir: str | None = None
        #: how the instance is confined (see :func:`sandbox_for`)
        self.sandbox = "none"

    # ---- lifecycle -------------------------------------------------------------
    @property
    def instance_dir(self) -> str:
        """A private folder of this instance (kept across its restarts)."""
        if self._instance_dir is None:
            self._instance_dir = tempfile.mkdtemp(prefix=f"toolfleet-{self.profile.name}-")
        return self._instance_dir

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def start(self) -> None:
        """Start the agent and do the protocol's handshake."""
        with self._lock:
            if self.alive():
                return
            self.generation += 1
            self.prompts_served = 0
            profile = self.profile
            argv = [a.replace("{instance_dir}", self.instance_dir) for a in profile.argv]
            self._buffer.clear()
            self._messages.clear()
            self._eof = False
            self._wake.clear()
            full_env = tool_env(
                profile.env, instance_dir=self.instance_dir, passed=profile.pass_env
            )
            self.protocol.prepare(self.instance_dir, full_env)
            sandbox, self.sandbox = sandbox_for(profile, self.instance_dir, self.cwd)
            if sandbox is not None:
                if "HOME" not in profile.env:
                    full_env["HOME"] = self.instance_dir  # the worker's is hidden
                argv = confine(argv, sandbox[1], sandbox[0])
            log_path = os.path.join(self.instance_dir, "agent.log")
            try:
                with open(log_path, "ab") as stderr:  # the child keeps its own copy
                    self._proc = subprocess.Popen(
                        argv,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        cwd=self.cwd,
                        env=full_env,
                        start_new_session=True,
                        preexec_fn=lambda: die_with_parent(signal.SIGKILL),
                    )
            except OSError as exc:
                self.last_error = f"{profile.name} could not start: {exc}"
                raise ToolCrashed(self.last_error) from None
            self.started_at = time.time()
            try:
                self.protocol.handshake(self, time.monotonic() + profile.start_timeout)
            except (ToolCrashed, ToolTimeout) as exc:
                self.last_error = f"{profile.name}: {exc.message}"
                self._kill()
                raise type(exc)(self.last_error) from None

    def close(self, grace: float | None = None) -> None:
        """End the agent: its stdin closed, then SIGTERM, then SIGKILL (its group)."""
        with self._lock:
            self._kill(self.profile.grace if grace is None else grace)

    def _kill(self, grace: float = 0.2) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:  # a clean end: its input closed
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
            if proc.poll() is not None:
                break
        if proc.stdout is not None:
            proc.stdout.close()

    # ---- the wire --------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        """Write one message (a JSON line) to the agent."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise ToolCrashed(f"{self.profile.name} is not running")
        data = (json.dumps(message) + "\n").encode()
        with self._write_lock:
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                raise ToolCrashed(f"{self.profile.name} closed its input") from None

    def receive(self, deadline: float) -> dict[str, Any]:
        """The agent's next message (ToolCrashed at its end, ToolTimeout at ``deadline``;
        ``{"type": "__abort__"}`` when another thread aborts the running prompt)."""
        while True:
            if self._messages:
                return self._messages.popleft()
            if self._eof:
                raise ToolCrashed(f"{self.profile.name} exited ({self._status()})")
            if self._abort is not None and self._turn is not None:
                return {"type": "__abort__"}
            left = deadline - time.monotonic()
            if left <= 0:
                raise ToolTimeout(f"no answer from {self.profile.name} in time")
            proc = self._proc
            if proc is None or proc.stdout is None:
                raise ToolCrashed(f"{self.profile.name} is not running")
            fd = proc.stdout.fileno()
            ready = select.select([fd, self._wake.fileno()], [], [], min(left, 0.5))[0]
            if self._wake.fileno() in ready:
                self._wake.drain()
            if fd in ready:
                self._take(os.read(fd, 65536))

    def _take(self, chunk: bytes) -> None:
        """Split what the agent wrote into JSON messages (an empty read: its end)."""
        if not chunk:
            self._eof = True
            return
        self._buffer += chunk
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end]).strip()
            del self._buffer[: end + 1]
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                log.debug("not JSON from the agent: %r", line[:200])
                continue
            if isinstance(message, dict):
                self._messages.append(message)

    def _status(self) -> str:
        proc = self._proc
        code = None if proc is None else proc.poll()
        if code is None:
            return "closed its output"
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

    # ---- prompts -----------------------------------------------------------------
    def ask(self, text: str, timeout: float | None = None) -> Answer:
        """Send ``text``; return the answer when the protocol says the turn ended."""
        profile = self.profile
        text = validate_prompt(
            text, max_bytes=profile.max_prompt_bytes, allow_control=profile.allow_control
        )
        with self._lock:
            if not self.alive():
                raise ToolCrashed(f"{profile.name} is not running")
            limit = timeout if timeout is not None else profile.prompt_timeout
            started = time.monotonic()
            turn = Turn()
            self._abort = None
            self._wake.clear()
            self._turn = turn
            try:
                for message in self.protocol.prompt(text):
                    self.send(message)
                self._follow(turn, started + limit)
            except ToolCrashed as exc:
                self.last_error = f"{profile.name} died while answering: {exc.message}"
                self._kill()
                raise ToolCrashed(self.last_error) from None
            except ToolTimeout:
                how = "interrupted" if self._stop_turn(turn) else "restarted"
                self.last_error = f"no answer within {limit:g} s; the agent was {how}"
                raise ToolTimeout(self.last_error) from None
            finally:
                self._turn = None
            elapsed = (time.monotonic() - started) * 1000
            self.prompts_served += 1
            self._latencies.append(elapsed)
            output = turn.output if turn.output is not None else turn.so_far
            return Answer(
                output, turn.ok, None, False, round(elapsed, 3), turn.usage, tuple(turn.tool_calls)
            )

    def _follow(self, turn: Turn, deadline: float) -> None:
        """Read the agent's messages into ``turn`` until it ends (or is aborted)."""
        while not turn.done:
            message = self.receive(deadline)
            if message.get("type") == "__abort__":
                mode, why = self._abort or ("cancel", "")
                self._abort = None
                if mode == "restart":
                    self.last_error = f"{self.profile.name} was restarted while answering ({why})"
                    self._kill()
                    raise ToolCrashed(self.last_error)
                how = "interrupted" if self._stop_turn(turn) else "restarted"
                raise PromptCancelled(f"{why}; the agent was {how}")
            for reply in self.protocol.feed(message, turn):
                self.send(reply)

    def _stop_turn(self, turn: Turn) -> bool:
        """Interrupt the turn and read to its end within the grace; else restart."""
        try:
            for message in self.protocol.interrupt():
                self.send(message)
            deadline = time.monotonic() + self.profile.grace
            while not turn.done:
                for reply in self.protocol.feed(self.receive(deadline), turn):
                    self.send(reply)
            return True
        except (ToolCrashed, ToolTimeout):
            pass
        log.warning("%s did not end its turn when interrupted; restarting it", self.profile.name)
        self._kill()
        try:
            self.start()
        except (ToolCrashed, ToolTimeout) as exc:
            self.last_error = exc.message
        return False

    def reset(self) -> bool:
        """A new conversation in this process, through the protocol (no restart); False
        when the protocol has no way to (or the agent failed to)."""
        with self._lock:
            if not self.alive():
                return False
            try:
                return self.protocol.reset(self, time.monotonic() + self.profile.grace + 10)
            except (ToolCrashed, ToolTimeout) as exc:
                log.warning("%s: reset failed (%s)", self.profile.name, exc.message)
                return False

    def partial(self) -> str | None:
        """The running prompt's text so far (None between prompts)."""
        turn = self._turn
        return None if turn is None else turn.so_far

    def abort(self, mode: str, why: str) -> bool:
        """Stop the running prompt from another thread ("cancel": the protocol's interrupt,
        PromptCancelled; "restart": kill, ToolCrashed). False when none runs."""
        if self._turn is None:
            return False
        self._abort = (mode, why)
        self._wake.raise_(mode, why)
        return True

    # ---- health ----------------------------------------------------------------
    def snapshot(self) -> ToolSnapshot:
        """The instance's health now (safe to call from any thread)."""
        return snapshot_of(
            self, busy=self._turn is not None, latencies=self._latencies, alive=self.alive()
        )
