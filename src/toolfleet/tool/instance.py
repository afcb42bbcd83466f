"""One persistent tool process driven through a pty: start, ask, interrupt, restart, close."""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections import deque

from ptyprocess import PtyProcess

from toolfleet.errors import (
    IncompleteInput,
    PromptCancelled,
    PromptRejected,
    ToolCrashed,
    ToolTimeout,
)
from toolfleet.profiles import Profile
from toolfleet.tool.detect import Detector, Matcher, Quiescence, make_detector
from toolfleet.tool.encode import encode
from toolfleet.tool.interface import Answer, ToolSnapshot, snapshot_of
from toolfleet.tool.limits import ToolLimits
from toolfleet.tool.output import clean_output
from toolfleet.tool.sandbox import SandboxPolicy, sandbox_for
from toolfleet.tool.spawn import is_alive, kill_group, spawn_tool, tool_env
from toolfleet.tool.terminal import (
    Aborted,
    AbortSignal,
    Deadline,
    Eof,
    discard,
    exchange,
    read_until,
)
from toolfleet.validation import validate_prompt

__all__ = ["ToolInstance"]

log = logging.getLogger(__name__)

_LATENCY_WINDOW = 200


class ToolInstance:
    """A long-lived interactive tool in a pseudo-terminal. Thread-safe; one prompt at a time."""

    def __init__(self, profile: Profile, *, cwd: str | None = None) -> None:
        self.profile = profile
        self.cwd = cwd if cwd is not None else profile.cwd
        self.generation = 0
        self.prompts_served = 0  # by the current generation
        self.last_error: str | None = None
        self.started_at = time.time()
        self._proc: PtyProcess | None = None
        self._busy = False
        self._lock = threading.RLock()
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._incomplete = re.compile(profile.incomplete_pattern or r"(?!)")
        self._error = re.compile(profile.error_pattern or r"(?!)")
        self._strip = [re.compile(p.encode()) for p in profile.strip_output]
        self._instance_dir: str | None = None
        #: how the instance is confined: strict, or none (with the reason when strict
        #: was asked for)
        self.sandbox = "none"
        self._limits = ToolLimits()
        self._last_interrupt = 0.0
        self._detector: Detector = Quiescence(0.1)
        #: the running prompt's matcher (its output so far), None between prompts
        self._matcher: Matcher | None = None
        #: ("cancel" | "restart", why) asked by another thread of the running prompt
        self._abort = AbortSignal()

    # ---- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Spawn the tool and wait until it is ready for its first prompt."""
        with self._lock:
            if self.alive():
                return
            self.generation += 1
            self.prompts_served = 0
            profile = self.profile
            nonce = secrets.token_hex(6)
            marker = profile.marker.replace("{nonce}", nonce)
            cont = profile.continuation.replace("{nonce}", nonce) if profile.continuation else None
            self._detector = make_detector(profile, marker, cont)
            env = tool_env(profile.env, instance_dir=self.instance_dir, passed=profile.pass_env)
            sandbox = self._sandbox()
            if sandbox is not None and "HOME" not in profile.env:
                env["HOME"] = self.instance_dir  # the worker's is hidden
            memory = None if profile.max_memory_mb is None else profile.max_memory_mb << 20
            self._limits.remove()
            self._limits = ToolLimits.make(
                memory, profile.max_processes, profile.name, cpus=profile.max_cpus
            )
            self._proc = spawn_tool(profile.argv, env, self.cwd, sandbox, self._limits.enter)
            self.started_at = time.time()
            deadline = time.monotonic() + profile.start_timeout
            try:
                self._await_ready(marker, cont, deadline)
            except (Eof, Deadline) as exc:
                status = self._reap()
                why = "timed out" if isinstance(exc, Deadline) else f"exited ({status})"
                self.last_error = f"{profile.name} {why} while starting"
                raise (ToolTimeout if isinstance(exc, Deadline) else ToolCrashed)(
                    self.last_error
                ) from None

    def _await_ready(self, marker: str, cont: str | None, deadline: float) -> None:
        profile = self.profile
        if profile.ready_pattern:
            read_until(self._proc, re.compile(profile.ready_pattern.encode()), deadline)
        setup = [
            line.replace("{marker}", marker).replace("{continuation}", cont or "")
            for line in profile.setup
        ]
        data = "".join(line + "\n" for line in setup)
        if profile.detector == "marker" and not setup and profile.ready_pattern:
            return  # the ready pattern was the tool's (fixed) prompt
        tag = secrets.token_hex(8)
        matcher = self._detector.begin(len(setup), tag, self.profile.max_output_bytes)
        exchange(self._proc, data + self._detector.suffix(tag), matcher, deadline)

    def _sandbox(self) -> tuple[str, SandboxPolicy] | None:
        """bubblewrap and the policy of a confined profile, where this host can confine
        (:attr:`sandbox` says which, and why not)."""
        sandbox, self.sandbox = sandbox_for(self.profile, self.instance_dir, self.cwd)
        return sandbox

    @property
    def instance_dir(self) -> str:
        """A private folder of this instance (kept across its restarts)."""
        if self._instance_dir is None:
            self._instance_dir = tempfile.mkdtemp(prefix=f"toolfleet-{self.profile.name}-")
        return self._instance_dir

    def alive(self) -> bool:
        """True while the tool process runs."""
        proc = self._proc
        return proc is not None and is_alive(proc)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self, grace: float | None = None) -> None:
        """Exit gracefully: the profile's exit command, then SIGTERM, then SIGKILL."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            grace = self.profile.grace if grace is None else grace
            if is_alive(proc) and self.profile.exit_command:
                try:
                    os.write(proc.fd, (self.profile.exit_command + "\n").encode())
                    end = time.monotonic() + grace
                    while is_alive(proc) and time.monotonic() < end:
                        discard(self._proc, 0.05)
                except (OSError, Eof):
                    pass
            kill_group(proc, grace)
            self._limits.remove()
            self._proc = None

    def restart(self) -> None:
        """Stop the tool (forcefully) and start a new generation."""
        with self._lock:
            self.close(grace=0.2)
            self.start()

    def _reap(self) -> str:
        proc, self._proc = self._proc, None
        if proc is None:
            return "not started"
        kill_group(proc, 0.2)
        hit = self._limits.exceeded()
        self._limits.remove()
        how = f"killed by signal {proc.signalstatus}" if proc.signalstatus else None
        how = how or f"exit status {proc.exitstatus}"
        return f"{how}; {hit}" if hit else how

    # ---- prompts ---------------------------------------------------------------
    def ask(self, text: str, timeout: float | None = None) -> Answer:
        """Type ``text`` into the tool and return its response.

        Raises PromptRejected, IncompleteInput, ToolTimeout (the tool was interrupted or
        restarted) or ToolCrashed (the tool died; call :meth:`start` to get a new one).
        """
        profile = self.profile
        text = validate_prompt(
            text, max_bytes=profile.max_prompt_bytes, allow_control=profile.allow_control
        )
        with self._lock:
            if any(guard in text for guard in self._detector.guards()):
                raise PromptRejected("prompt contains the tool's prompt marker")
            if not self.alive():
                self._reap()
                raise ToolCrashed(f"{profile.name} is not running")
            tag = secrets.token_hex(8)
            typed = encode(profile.encoder, text, tag)
            matcher = self._detector.begin(typed.prompts, tag, profile.max_output_bytes)
            limit = timeout if timeout is not None else profile.prompt_timeout
            self._abort.clear()
            self._matcher = matcher
            self._busy = True
            started = time.monotonic()
            try:
                discard(self._proc, 0)
                exchange(
                    self._proc,
                    typed.data + self._detector.suffix(tag),
                    matcher,
                    started + limit,
                    self._abort,
                )
            except Aborted:
                self._busy = False
                raise self._aborted() from None
            except Eof:
                why = self._reap()
                self.last_error = f"{profile.name} died while answering ({why})"
                raise ToolCrashed(self.last_error) from None
            except Deadline:
                if stopped := self._stopped_at_limit():
                    raise stopped from None
                how = "interrupted" if self._recover() else "restarted"
                self.last_error = f"no answer within {limit:g} s; the tool was {how}"
                raise ToolTimeout(self.last_error) from None
            finally:
                self._busy = False
                self._matcher = None
            if stopped := self._stopped_at_limit():  # e.g. a fork bomb gone to the background
                raise stopped
            elapsed = (time.monotonic() - started) * 1000
            reply = matcher.reply()
            raw = reply.output
            for pattern in self._strip:
                raw = pattern.sub(b"", raw, count=1)
            output = clean_output(raw)
            if reply.incomplete or self._incomplete.search(output):
                if reply.incomplete and not self._recover():
                    output += "\n(the tool did not return to its prompt and was restarted)"
                raise IncompleteInput(f"incomplete input: {output.strip()[-500:]}")
            self.prompts_served += 1
            self._latencies.append(elapsed)
            ok = reply.status in (None, 0) and not self._error.search(output)
            return Answer(output, ok, reply.status, reply.truncated, round(elapsed, 3))

    def partial(self) -> str | None:
        """The running prompt's output so far, cleaned (None between prompts); for
        streaming, from another thread."""
        matcher = self._matcher
        return None if matcher is None else clean_output(matcher.so_far())

    def abort(self, mode: str, why: str) -> bool:
        """Stop the running prompt from another thread, without waiting for it: "cancel"
        interrupts the tool (restarting it if it does not come back within the grace)
        and the prompt raises PromptCancelled; "restart" kills the tool and the prompt
        raises ToolCrashed. False when no prompt is running."""
        if not self._busy:
            return False
        self._abort.raise_(mode, why)
        return True

    def _stopped_at_limit(self) -> ToolCrashed | None:
        """If the tool hit one of its limits: stop it and whatever it left running, and
        return the error naming the limit."""
        if not self._limits.exceeded():
            return None
        self.last_error = f"{self.profile.name} stopped: {self._reap()}"
        return ToolCrashed(self.last_error)

    def _aborted(self) -> PromptCancelled | ToolCrashed:
        """The error of a prompt stopped by :meth:`abort` (the tool dealt with first)."""
        mode, why = self._abort.reason or ("cancel", "")
        self._abort.clear()
        name = self.profile.name
        if mode == "restart":
            self._reap()
            self.last_error = f"{name} was restarted while answering ({why})"
            return ToolCrashed(self.last_error)
        how = "interrupted" if self._recover() else "restarted (it ignored the interrupt)"
        return PromptCancelled(f"{why}; the tool was {how}")

    def reset(self) -> bool:
        """A pty tool has no reset of its own: False (its profile's reset commands, or a
        restart, do it)."""
        return False

    def interrupt(self) -> bool:
        """Send the profile's interrupt; True if the tool came back to its prompt."""
        with self._lock:
            return self._recover()

    def _recover(self) -> bool:
        """Interrupt and resynchronise with a probe prompt; restart if that fails."""
        proc = self._proc
        grace = self.profile.grace
        if proc is not None and is_alive(proc):
            try:
                wait = self._last_interrupt + self.profile.interrupt_cooldown - time.monotonic()
                if wait > 0:
                    discard(self._proc, wait)
                os.write(proc.fd, self.profile.interrupt.encode())
                self._last_interrupt = time.monotonic()
                discard(self._proc, min(0.2, grace))
                tag = secrets.token_hex(8)
                typed = encode(self.profile.encoder, "", tag)
                matcher = self._detector.begin(typed.prompts, tag, 4096)
                deadline = time.monotonic() + grace
                exchange(self._proc, typed.data + self._detector.suffix(tag), matcher, deadline)
                discard(self._proc, 0.05)
                return True
            except (OSError, Eof, Deadline):
                pass
        log.warning("%s did not come back to its prompt; restarting it", self.profile.name)
        self.last_error = f"{self.profile.name} did not come back to its prompt; restarted"
        self._reap()
        try:
            self.start()
        except (ToolCrashed, ToolTimeout) as exc:
            self.last_error = exc.message
        return False

    # ---- health ----------------------------------------------------------------
    def snapshot(self) -> ToolSnapshot:
        """The instance's health now (safe to call from any thread)."""
        return snapshot_of(self, busy=self._busy, latencies=self._latencies, alive=self.alive())
