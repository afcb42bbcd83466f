"""The producer side: ``Fleet`` submits prompts and reads health. No tool layer imported."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from celery import Celery

from toolfleet.broker import (
    CHUNK_TASK,
    PRODUCER_CONFIG,
    PROMPT_TASK,
    direct_queue,
    make_app,
    shared_queue,
)
from toolfleet.client.bulk import MapRun, run_map
from toolfleet.client.cancel import cancel_prompts
from toolfleet.client.changes import ChangeBook
from toolfleet.client.chunks import ChunkHandle, ChunkItemHandle
from toolfleet.client.handle import PromptHandle
from toolfleet.client.items import MapItem, expand_steps
from toolfleet.client.persistence import persistence
from toolfleet.client.sessions import Session, Strategy, attach, open_session
from toolfleet.client.unavailable import redis_errors
from toolfleet.client.verify import CheckSpec, as_steps
from toolfleet.errors import (
    ConfigError,
    NoWorkers,
    UnknownProfile,
)
from toolfleet.health import read_health
from toolfleet.models import InstanceHealth, PromptResult
from toolfleet.profiles import Profile, load_profiles
from toolfleet.redisconn import redis_client
from toolfleet.settings import Settings
from toolfleet.validation import DEFAULT_MAX_PROMPT_BYTES, validate_prompt

__all__ = ["Fleet", "PromptHandle", "task_reprs"]

log = logging.getLogger(__name__)


def task_reprs(kwargs: dict[str, Any], width: int = 60) -> dict[str, str]:
    """How Celery's events and Flower show a prompt: its text (cut) as the task's
    argument, the other options as its keyword arguments."""
    text = str(kwargs["text"])
    cut = text if len(text) <= width else text[: width - 3] + "..."
    rest = {k: v for k, v in kwargs.items() if k != "text"}
    return {"argsrepr": repr(cut), "kwargsrepr": repr(rest)}


class Fleet:
    """The producer's view of the fleet: submit prompts, read health records."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.app: Celery = make_app(
            self.settings, main="toolfleet-producer", overrides=PRODUCER_CONFIG
        )
        self._profiles: dict[str, Profile] | None = None

    @classmethod
    def from_env(cls) -> Fleet:
        """A fleet configured from ``TOOLFLEET_*`` environment variables."""
        return cls(Settings.from_env())

    def _local_profiles(self) -> dict[str, Profile]:
        """The built-in profiles and those of TOOLFLEET_PROFILES (read once)."""
        if self._profiles is None:
            try:
                self._profiles = load_profiles(self.settings.profiles)
            except ConfigError as exc:  # the workers' file is not here: check with defaults
                log.warning("%s; checking prompts against the built-in profiles", exc)
                self._profiles = load_profiles(None)
        return self._profiles

    def _limits(self, profile: str) -> tuple[int, bool]:
        known = self._local_profiles().get(profile)
        if known is None:  # a profile only the workers know: use the defaults
            return DEFAULT_MAX_PROMPT_BYTES, False
        return known.max_prompt_bytes, known.allow_control

    @property
    def changes(self) -> ChangeBook:
        """The change records of worktree workspaces: list, apply, discard."""
        return ChangeBook(self.app.backend.client, float(self.settings.result_expires))

    def uses_worktree(self, profile: str) -> bool:
        """Whether ``profile`` (as defined here) gives each instance a git worktree."""
        known = self._local_profiles().get(profile)
        return known is not None and known.workspace == "worktree"

    def runs_once(self, profile: str) -> bool:
        """Whether ``profile`` (as defined here) runs a prompt or item at most once
        (``on_worker_lost = "fail"``)."""
        known = self._local_profiles().get(profile)
        return known is not None and known.on_worker_lost == "fail"

    def validate(self, text: str, profile: str) -> str:
        """``text`` as it would be sent to ``profile``, or PromptRejected (no I/O)."""
        max_bytes, allow_control = self._limits(profile)
        return validate_prompt(text, max_bytes=max_bytes, allow_control=allow_control)

    def require_profile(self, profile: str) -> None:
        """Raise UnknownProfile unless a profile definition here (built-in or
        TOOLFLEET_PROFILES) or a live worker knows ``profile``; free for the former."""
        local = self._local_profiles()
        if profile in local:
            return
        serving = {r.profile for r in self.status()}
        if profile in serving:
            return
        raise UnknownProfile(
            f"unknown profile {profile!r}: no live worker serves it and no profile"
            f" definition here names it; known: {', '.join(sorted(set(local) | serving))}"
            " (workers' own profiles files: set TOOLFLEET_PROFILES to the same file)"
        )

    def submit(
        self,
        text: str,
        profile: str = "python",
        *,
        timeout: float | None = None,
        worker: str | None = None,
        session: str | None = None,
        seq: int | None = None,
        budget: float | None = None,
    ) -> PromptHandle:
        """Enqueue one prompt; ``worker`` targets one node (``name@host``).

        An unknown ``profile`` (see :meth:`require_profile`) is refused: nothing is sent.
        ``budget``: what the prompt's model calls may cost, kept during the prompt by
        the worker's model gateway (profiles with an ``upstream``): the call that would
        pass it is refused and the prompt fails with BudgetSpent.
        """
        if budget is not None and budget <= 0:
            raise ValueError("budget must be more than 0")
        text = self.validate(text, profile)
        if worker is None and session is None:
            self.require_profile(profile)
        kwargs: dict[str, Any] = {"text": text}
        if timeout is not None:
            kwargs["timeout"] = float(timeout)
        if session is not None:
            kwargs.update(session=session, seq=seq)
        if budget is not None:
            kwargs["budget"] = float(budget)
        queue = direct_queue(worker) if worker else shared_queue(profile)
        shown = task_reprs(kwargs)
        with redis_errors(self.settings):
            result = self.app.send_task(PROMPT_TASK, kwargs=kwargs, queue=queue, **shown)
        # only a shared-queue prompt is sent again if lost: a pinned one needs its worker
        resend = None if worker or session else {"kwargs": kwargs, "queue": queue, **shown}
        return PromptHandle(self, result, profile, worker, resend)

    def submit_many(
        self, texts: Sequence[str], profile: str = "python", *, timeout: float | None = None
    ) -> list[ChunkItemHandle]:
        """Enqueue ``texts`` as ONE message (a chunk), run in order on one instance of
        ``profile``; a handle per prompt (``get`` as a PromptHandle's; ``.chunk`` is the
        message). Each prompt fails alone: a crash restarts the tool and the next runs.
        Every text is checked first (PromptRejected: nothing is sent)."""
        if not texts:
            raise ValueError("submit_many needs at least one prompt")
        checked = [self.validate(text, profile) for text in texts]
        self.require_profile(profile)
        kwargs: dict[str, Any] = {"texts": checked}
        if timeout is not None:
            kwargs["timeout"] = float(timeout)
        first = task_reprs({"text": checked[0]})["argsrepr"]
        shown = {"argsrepr": f"{len(checked)} prompts: {first}, ...", "kwargsrepr": "{}"}
        resend = {"kwargs": kwargs, "queue": shared_queue(profile), **shown}
        with redis_errors(self.settings):
            result = self.app.send_task(CHUNK_TASK, **resend)
        return ChunkHandle(self, result, profile, len(checked), resend).items

    def ask(self, text: str, profile: str = "python", timeout: float = 60.0) -> PromptResult:
        """Submit and wait: the result of one prompt."""
        return self.submit(text, profile).get(timeout=timeout)

    def session(
        self,
        profile: str = "python",
        strategy: Strategy = "least-busy",
        *,
        worker: str | None = None,
        ttl: float | None = None,
        wait: float = 30.0,
        budget: float | None = None,
        base: str | None = None,
    ) -> Session:
        """Lease one instance of ``profile`` for an exclusive, ordered conversation.

        ``strategy`` is ``least-busy`` or ``round-robin``; ``worker`` pins to one node;
        ``base``: the commit a worktree profile's instance starts from (default: its base).
        Raises NoWorkers when no instance is free within ``wait`` seconds, and
        UnknownProfile at once when nothing knows ``profile``. With ``budget``, ``send``
        raises BudgetSpent once the cost the session's answers reported reaches it.
        """
        if worker is None:
            self.require_profile(profile)
        with redis_errors(self.settings):
            session = open_session(
                self, profile, strategy=strategy, worker=worker, ttl=ttl, wait=wait, base=base
            )
        session.budget = budget
        return session

    def map(
        self,
        prompts: Iterable[MapItem | str],
        profile: str | None = None,
        *,
        in_flight: int = 8,
        retries: int = 0,
        journal: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
        result_timeout: float | None = None,
        steps: Sequence[str] | None = None,
        budget: float | None = None,
        chunk: int | None = None,
        item_budget: float | None = None,
        check: CheckSpec | None = None,
    ) -> MapRun:
        """Run many prompts, at most ``in_flight`` at once; iterate for outcomes as they come.

        Retryable failures are resubmitted up to ``retries`` times; with ``journal`` every
        outcome is appended to a JSONL file and items it records as done are skipped.
        ``timeout`` is each prompt's deadline inside the tool; a prompt unanswered
        ``result_timeout`` seconds after it was sent (default: its deadline plus 30 s)
        counts as lost (``ResultTimeout``, retried like a crash). An unknown ``profile``
        is refused at once (UnknownProfile), before anything is sent.

        With ``steps`` (templates with {path} {name} {stem} {index}) each of ``prompts``
        is a path, and its item runs the filled-in steps in order on one instance it
        holds exclusively (a session): the outcome lists every step's result, the item
        fails at its first failing step, and a retry runs it whole on a reset instance.
        With ``budget``, nothing new is sent once the cost the tools report reaches it.
        Behind a model gateway (profiles with an ``upstream``) ``item_budget`` is what one
        item's model calls may cost, kept during the item (BudgetSpent), and each item
        may spend no more than is left of ``budget``; when the provider says the quota
        is exhausted the run stops and its unfinished items are left not run
        (``cancelled``, ``quota_exhausted``), for a re-run with the journal.
        ``chunk`` prompts go in one message (default: the profile's ``chunk``, 16 for the
        REPLs, 1 for aider and the agents); ``in_flight`` counts messages.
        ``check`` (a :class:`CheckSpec`, worktree profiles): after each item's steps its
        command runs in the item's worktree, with repair turns while it fails; the change
        is ``ready`` if it passed, else ``rejected`` and the item fails with CheckFailed.
        """
        if profile is not None:
            self.require_profile(profile)
        if steps is not None:
            paths = [p if isinstance(p, str) else p.key for p in prompts]
            prompts = expand_steps(list(steps), paths)
        if check is not None:  # a check needs the session and worktree steps run in
            prompts = as_steps(prompts)
        return run_map(
            self,
            prompts,
            profile=profile,
            in_flight=in_flight,
            retries=retries,
            journal=journal,
            timeout=timeout,
            result_timeout=result_timeout,
            budget=budget,
            chunk=chunk,
            item_budget=item_budget,
            check=check,
        )

    def handle(self, prompt_id: str, profile: str) -> PromptHandle:
        """A handle on a prompt submitted elsewhere (by its id): get, stream, cancel."""
        return PromptHandle(self, self.app.AsyncResult(prompt_id), profile, None)

    def attach(self, session_id: str) -> Session:
        """A session opened by another process (e.g. ``toolfleet session open``)."""
        with redis_errors(self.settings):
            return attach(self, session_id)

    def status(
        self, profile: str | None = None, *, fresher_than: float | None = None
    ) -> list[InstanceHealth]:
        """The live health record of every instance (of ``profile``).

        With ``fresher_than`` (a Unix time) wait up to two heartbeat intervals for
        records written after it, e.g. to see counters that include prompts just run.
        """
        with redis_errors(self.settings):
            records = read_health(self.app.backend.client, profile)
            if fresher_than is None:
                return records
            end = time.monotonic() + 2 * self.settings.heartbeat_interval
            while any(r.updated_at < fresher_than for r in records) and time.monotonic() < end:
                time.sleep(0.05)
                records = read_health(self.app.backend.client, profile)
            return records

    def gateways(self) -> dict[str, dict[str, float]]:
        """The model gateways' figures by upstream, fleet-wide (see
        :func:`toolfleet.gateway.stats.upstream_stats`); empty when none has served."""
        from toolfleet.gateway.stats import upstream_stats

        with redis_errors(self.settings):
            return upstream_stats(self.app.backend.client)

    def persistence(self) -> str:
        """Whether the broker's Redis keeps queued prompts across its restart, in words."""
        settings = self.settings
        with redis_errors(settings):
            client = redis_client(settings.broker_url, settings.sentinel_master)
            try:
                return persistence(client)
            finally:
                client.close()

    def wait_ready(self, count: int, profile: str | None = None, timeout: float = 60.0) -> None:
        """Block until ``count`` instances (of ``profile``) are ready, else NoWorkers."""
        end = time.monotonic() + timeout
        while True:
            ready = [h for h in self.status(profile) if h.state == "ready"]
            if len(ready) >= count:
                return
            if time.monotonic() >= end:
                raise NoWorkers(f"{len(ready)} of {count} instances ready after {timeout:g} s")
            time.sleep(0.1)

    def cancel(self, *prompt_ids: str) -> dict[str, str]:
        """Cancel prompts by id (see :meth:`PromptHandle.cancel`): what became of each."""
        return cancel_prompts(self, list(prompt_ids))

    def restart(self, worker: str, timeout: float = 30.0) -> dict[str, Any]:
        """Restart ``worker``'s tool (name@host) through Celery remote control, at once
        even mid-prompt: each answering node's reply (none: no such worker answered)."""
        with redis_errors(self.settings):
            replies = self.app.control.broadcast(
                "tool_restart", reply=True, destination=[worker], timeout=timeout
            )
        return {node: answer for reply in replies or [] for node, answer in reply.items()}

    def close(self) -> None:
        """Release connections: the broker's, and this thread's result backend."""
        self.release_thread()
        self.app.close()

    def release_thread(self) -> None:
        """Close the result backend Celery keeps for the calling thread (one a thread):
        its Redis connections and result subscriptions. A thread that used the fleet
        calls this when it is done (it still works after, reconnecting).

        Left to the garbage collector, the backend's sockets can be finalized before the
        connections holding them (ResourceWarning: unclosed socket); and a result never
        collected (timed out, given up on) stays subscribed, so that its
        ``AsyncResult.__del__`` unsubscribes on a pub/sub connection already closed,
        opening a new one that nobody closes.
        """
        backend = self.app.backend
        consumer = getattr(backend, "result_consumer", None)
        if consumer is not None:
            consumer.subscribed_to.clear()  # nothing left for AsyncResult.__del__ to undo
            consumer.stop()
        client = getattr(backend, "client", None)
        if client is not None:
            client.connection_pool.disconnect()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
