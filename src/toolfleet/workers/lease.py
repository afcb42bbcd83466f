"""The worker's end of session leases: take, drop, and notice an expired lease."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from toolfleet.client.leases import holder
from toolfleet.ending import KEEP, end_mark
from toolfleet.errors import GitError
from toolfleet.keys import RedisLike
from toolfleet.workers.supervisor import Supervisor
from toolfleet.workers.workspace import Worktree

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Pins the supervisor's instance to the session holding this worker's lease key."""

    def __init__(
        self,
        supervisor: Supervisor,
        client: RedisLike,
        on_change: Callable[[], None],
        workspace: Worktree | None = None,
        changes_ttl: float = 86400.0,
    ) -> None:
        self.supervisor = supervisor
        self.client = client
        self.on_change = on_change
        #: reset before each session; its changes committed and recorded after it
        self.workspace = workspace
        self.changes_ttl = changes_ttl
        self._ending = threading.Lock()

    def take(self, session: str, base: str | None = None) -> dict[str, Any]:
        """A producer acquired the lease key for ``session``: pin the instance to it
        (its worktree reset to ``base`` when given, else to the profile's base)."""
        sup = self.supervisor
        if sup.session == session:
            return {"ok": session, "generation": sup.session_generation}
        if sup.session is not None:
            return {"error": f"held by another session ({sup.session})"}
        if sup.reset_pending or sup.state in ("failed", "stopping", "restarting"):
            return {"error": f"not available (state {sup.state})"}
        if holder(self.client, sup.worker) != session:
            return {"error": "the lease key does not name this session"}
        generation = sup.begin_session(session)
        if generation is None:  # a prompt holds it: answer now, never wait for the prompt
            return {"error": "busy with a prompt"}
        if self.workspace is not None:
            try:
                self.workspace.reset(base)
            except GitError as exc:
                sup.end_session()
                return {"error": f"could not reset the worktree: {exc.message}"}
        log.info("%s: leased to session %s", sup.worker, session)
        self.on_change()
        return {"ok": session, "generation": generation}

    def drop(self, session: str) -> dict[str, Any]:
        """The session closed: unpin, reset the instance, return to the shared queue."""
        if self.supervisor.session != session:
            return {"error": f"session {session} does not hold this worker"}
        self._end("closed")
        return {"ok": session}

    def check(self) -> None:
        """End a session whose lease key expired or changed (its producer went away);
        never waits for an end under way (a push tried again, in the mailbox's thread)."""
        session = self.supervisor.session
        if session is None or self._ending.locked():
            return
        if holder(self.client, self.supervisor.worker) != session:
            self._end("lease expired")

    def _end(self, why: str) -> None:
        """End the session once: the producer's release (control thread) and the lease
        check (watcher thread) can both see it end; two commits of one worktree would
        race, and the second would record an empty change over the first."""
        with self._ending:
            session = self.supervisor.session
            if session is None:
                return
            log.info("%s: session %s ended (%s)", self.supervisor.worker, session, why)
            if self.workspace is not None:
                # only a change its producer still wants: a session it gave up on (this
                # worker frozen or cut off meanwhile), or whose producer went away, is
                # neither committed nor recorded (the item runs elsewhere, or again)
                if end_mark(self.client, session) == KEEP:
                    self.workspace.finish(session, self.client, self.changes_ttl)
                else:
                    log.warning(
                        "%s: session %s was given up by its producer: its work is not kept",
                        self.supervisor.worker,
                        session,
                    )
            self.supervisor.end_session()
        self.on_change()
