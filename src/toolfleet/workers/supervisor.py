"""Owns a worker's tool instance: runs prompts, restarts dead tools, recycles, crash-loops."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from toolfleet.errors import SessionLost, ToolCrashed, ToolfleetError, ToolTimeout
from toolfleet.models import InstanceHealth, PromptResult, State, Usage
from toolfleet.tool.interface import Instance
from toolfleet.tool.usage import parse_usage, priced
from toolfleet.workers.record import health_record
from toolfleet.workers.restarts import RestartPolicy, recycle_reason
from toolfleet.workers.stream import Streamer

if TYPE_CHECKING:
    from toolfleet.gateway.meter import Meter

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)


Listener = Callable[[State, State], None]


class Supervisor:
    """Keeps one instance alive and serves prompts on it, one at a time."""

    def __init__(self, instance: Instance, worker: str, queues: list[str]) -> None:
        self.instance = instance
        self.profile = instance.profile
        self.worker = worker
        self.queues = queues
        self.restarts = 0
        self.served = 0
        self.last_error: str | None = None
        self._state: State = "starting"
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self.policy = RestartPolicy(self.profile)
        self._stop = threading.Event()
        #: wakes the watcher before its next tick (a session ended: reset now)
        self._kick = threading.Event()
        self._watcher: threading.Thread | None = None
        #: the session holding the instance, and the generation it was leased at
        self.session: str | None = None
        self.session_generation: int | None = None
        self.reset_pending = False
        #: Unix time the running prompt began, None between prompts
        self.busy_since: float | None = None
        #: the id of the running prompt (None between prompts or when it has none)
        self.prompt_id: str | None = None
        #: publishes a running prompt's output as it comes (set by the worker's step)
        self.streamer: Streamer | None = None
        #: what the prompts reported spending (the profile's usage_pattern), summed
        self.usage_total: Usage | None = None
        pattern = self.profile.usage_pattern
        self._usage = re.compile(pattern) if pattern else None
        #: called about once a second from the watcher thread (e.g. lease checks)
        self.periodic: list[Callable[[], object]] = []
        #: the model gateway's account of each prompt, when the profile has an upstream:
        #: its usage is read from the wire, and a budget is kept during the prompt
        self.meter: Meter | None = None

    # ---- state -------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def public_state(self) -> State:
        """The state others see: an instance waiting for its reset is 'restarting'."""
        return "restarting" if self.reset_pending and self._state == "ready" else self._state

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` on every state change (from any thread)."""
        self._listeners.append(listener)

    def announce(self) -> None:
        """Tell the listeners that something they show changed (e.g. the session)."""
        self._notify(self._state, self._state)

    def _set(self, new: State) -> None:
        old, self._state = self._state, new
        if old != new:
            self._notify(old, new)

    def _notify(self, old: State, new: State) -> None:
        for listener in self._listeners:
            try:
                listener(old, new)
            except Exception:
                log.exception("state listener failed")

    # ---- lifecycle -------------------------------------------------------------
    def start(self, wait: bool = True) -> None:
        """Start the tool (retrying per the restart policy) and the watcher thread.

        With ``wait`` it returns once the tool is ready or the worker has failed.
        """
        self._stop.clear()
        self._try_start()
        while wait and self._state == "restarting" and not self._stop.is_set():
            self._stop.wait(self.policy.wait)
            self._try_start()
        self._watcher = threading.Thread(target=self._watch, name="toolfleet-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Exit the tool gracefully and stop watching it."""
        self._stop.set()
        self._kick.set()
        with self._lock:
            self._set("stopping")
            self.instance.close()
        if self._watcher is not None:
            self._watcher.join(timeout=2)

    def fail(self, reason: str) -> None:
        """Declare the worker failed (it cannot serve: e.g. no git repository for its
        worktree): it stops taking shared work and its health record says why."""
        log.error("%s: %s", self.worker, reason)
        self.last_error = reason
        self._set("failed")

    def restart(self, reason: str = "restart requested") -> None:
        """Restart the tool now; clears a crash-loop failure. A running prompt does not
        delay it: its tool is killed and it fails with ToolCrashed, then the prompt's
        thread starts the tool again."""
        while not self._lock.acquire(timeout=0.05):
            if self._state == "busy" and self.instance.abort("restart", reason):
                log.info("restarting %s under its prompt: %s", self.profile.name, reason)
                self.policy.clear()
                return
        try:
            log.info("restarting %s: %s", self.profile.name, reason)
            self.policy.clear()
            self._set("restarting")
            self.instance.close(grace=0.5)
            self._try_start()
        finally:
            self._lock.release()

    def cancel(self, prompt_id: str, why: str = "cancelled") -> bool:
        """Stop prompt ``prompt_id`` if it is the one running (it raises PromptCancelled);
        False when it is not running here. Takes no lock: answered while it runs."""
        if self.prompt_id != prompt_id or self._state != "busy":
            return False
        return self.instance.abort("cancel", why)

    def _try_start(self) -> None:
        """One start attempt; on failure schedule the next or declare a crash loop."""
        with self._lock:
            if self._state != "starting":
                self.restarts += 1
                self._set("restarting")
            try:
                self.instance.start()
            except ToolfleetError as exc:
                self._failed_start(exc.message)
                return
            self._set("ready")

    def _failed_start(self, why: str) -> None:
        """Count a failed start; retry at once, then with backoff; fail a crash loop."""
        self.last_error = why
        crash_loop = self.policy.failed(why)
        if crash_loop is not None:
            self.last_error = crash_loop
            log.error("%s: %s", self.worker, crash_loop)
            self._set("failed")
            return
        self._set("restarting")

    def _tool_died(self, why: str) -> None:
        """The tool died: restart it; an early death counts towards a crash loop."""
        snap = self.instance.snapshot()
        self.policy.died(snap.prompts_served, snap.uptime)
        self.last_error = why
        self._failed_start(why)
        if self._state == "restarting" and self.policy.due:
            self._try_start()

    def _watch(self) -> None:
        """The watcher thread: it must outlive any error, or nothing restarts the tool."""
        periodic_due = time.monotonic() + 1.0
        while not self._stop.is_set():
            self._kick.wait(0.2)
            self._kick.clear()
            if self._stop.is_set():
                break
            steps: list[Callable[[], object]] = [self._tend]
            if time.monotonic() >= periodic_due:  # about once a second
                steps = [*self.periodic, self._tend]
                periodic_due = time.monotonic() + 1.0
            for step in steps:
                try:
                    step()
                except Exception as exc:
                    self.last_error = f"watcher: {exc!r}"
                    log.exception("%s: watcher check failed; carrying on", self.worker)

    def _tend(self) -> None:
        """One look at the instance: restart, reset or recycle it when due."""
        with self._lock:
            if self._stop.is_set() or self._state in ("failed", "stopping", "busy"):
                return
            if self._state == "restarting":
                if self.policy.due:
                    self._try_start()
            elif not self.instance.alive():
                log.warning("%s: tool died while idle; restarting", self.worker)
                self._tool_died(f"{self.profile.name} died while idle")
            elif self.reset_pending:
                self._reset()
            elif self._needs_recycle():
                self._recycle()

    # ---- sessions ------------------------------------------------------------------
    @property
    def takes_shared_work(self) -> bool:
        """Whether the worker should consume its profile's shared queue now."""
        return self._state not in ("failed", "stopping") and not (
            self.session or self.reset_pending
        )

    def begin_session(self, session: str) -> int | None:
        """Pin the instance to ``session``; returns the generation it is pinned to, or
        None at once when a prompt holds the instance (a lease never waits for one)."""
        if not self._lock.acquire(timeout=0.5):
            return None
        try:
            self.session = session
            self.session_generation = self.instance.generation
            return self.session_generation
        finally:
            self._lock.release()

    def end_session(self) -> None:
        """Unpin; the instance is reset (by the watcher, woken now) before it serves
        anyone else."""
        self.session = None
        self.session_generation = None
        self.reset_pending = True
        self._kick.set()

    def _reset(self) -> None:
        """Clear the instance's state: the profile's reset commands, else a restart."""
        self._set("restarting")
        try:
            if self.instance.reset():  # an agent's protocol: a new conversation in place
                pass
            elif self.profile.reset and self.instance.alive():
                for command in self.profile.reset:
                    self.instance.ask(command)
            else:
                self.instance.close(grace=0.5)
                self.instance.start()
        except ToolfleetError as exc:
            log.warning("%s: reset failed (%s); restarting", self.worker, exc)
            self.instance.close(grace=0.2)
            self.reset_pending = False
            self._try_start()
            return
        self.reset_pending = False
        self._set("ready")

    # ---- prompts -----------------------------------------------------------------
    def run(
        self,
        text: str,
        *,
        timeout: float | None = None,
        prompt_id: str | None = None,
        session: str | None = None,
        seq: int | None = None,
        budget: float | None = None,
    ) -> PromptResult:
        """Run one prompt on the instance; raises the typed errors of ``toolfleet.errors``.

        A session's prompt runs only on the generation the session was pinned to. With
        a model gateway, ``budget`` is what the prompt's model calls may cost: the call
        that would pass it is refused and the prompt ends with BudgetSpent (the quota's
        end with ProviderQuotaExhausted).
        """
        with self._lock:
            if session is not None:
                if session != self.session:
                    raise SessionLost(f"session {session} no longer holds {self.worker}")
                if self.session_generation != self.instance.generation or not (
                    self.instance.alive()
                ):
                    raise SessionLost(
                        f"the instance on {self.worker} restarted under session {session}"
                        f" ({self.last_error or self.instance.last_error or 'no reason recorded'})"
                    )
            if self._state in ("restarting", "starting") or not self.instance.alive():
                self._await_instance()
            if self._state == "failed":
                raise ToolCrashed(f"{self.worker} has failed: {self.last_error}")
            self.busy_since = time.time()
            self.prompt_id = prompt_id
            self._set("busy")
            streamer = self.streamer if prompt_id is not None else None
            if streamer is not None and prompt_id is not None:
                streamer.begin(prompt_id)
            answered = False
            if self.meter is not None:
                self.meter.begin(budget)
            try:
                answer = self.instance.ask(text, timeout=timeout)
                answered = True
            except ToolCrashed as exc:
                self._set("restarting")
                self._tool_died(exc.message)
                raise
            except ToolTimeout as exc:
                self.last_error = exc.message
                raise
            finally:
                if streamer is not None and not answered:
                    streamer.end(None)  # failed: the stream ends, the error is the result
                self.busy_since = None
                self.prompt_id = None
                metered, refused = self.meter.end() if self.meter is not None else (None, None)
                if self._state == "busy":
                    self._set("ready")
            if streamer is not None:
                streamer.end(answer.output)
            self.served += 1
            if metered is not None:  # read from the wire: what the provider counted
                usage: Usage | None = metered
            else:
                usage = answer.usage or parse_usage(self._usage, answer.output)
                usage = priced(usage, self.profile.price_per_million)
            self.usage_total = Usage.total([self.usage_total, usage])
            pid, generation = self.instance.pid or 0, self.instance.generation
            if self._needs_recycle():
                self._recycle()
            if refused is not None:  # the agent was told no; the prompt did not finish
                raise refused
            return PromptResult(
                output=answer.output,
                ok=answer.ok,
                exit_status=answer.status,
                duration_ms=answer.duration_ms,
                worker=self.worker,
                profile=self.profile.name,
                pid=pid,
                generation=generation,
                session=session,
                seq=seq,
                truncated=answer.truncated,
                prompt_id=prompt_id,
                usage=usage,
                tool_calls=list(answer.tool_calls),
            )

    def _await_instance(self) -> None:
        """Restart a dead tool now, within the restart policy, before a prompt."""
        if self._state == "ready":
            self._set("restarting")
            self._tool_died(f"{self.profile.name} died while idle")
        while self._state == "restarting":
            time.sleep(self.policy.wait)
            self._try_start()

    # ---- recycling -------------------------------------------------------------
    def _needs_recycle(self) -> str | None:
        """Why the instance should be recycled now, or None."""
        return recycle_reason(self.profile, self.instance.snapshot)

    def _recycle(self) -> None:
        reason = self._needs_recycle()
        log.info("%s: recycling the tool: %s", self.worker, reason)
        self._set("restarting")
        self.instance.close()
        self._try_start()

    # ---- health ------------------------------------------------------------------
    def health(self) -> InstanceHealth:
        """This worker's health record, as the heartbeat publishes it."""
        return health_record(self)
