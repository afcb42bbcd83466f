"""The worker's lease keeper: a session ends once, whichever thread sees it end first."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from toolfleet.ending import mark_end
from toolfleet.keys import lease_key
from toolfleet.models import Changes
from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool.fake import FakeInstance
from toolfleet.workers.lease import LeaseKeeper
from toolfleet.workers.supervisor import Supervisor

from ..helpers import eventually


class KeyStore:
    """The Redis commands the lease keeper uses, in memory."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        return self.data.get(name)

    def set(self, name: str, value: Any, px: int | None = None) -> None:
        self.data[name] = value


class SlowWorkspace:
    """Records each commit; a commit takes a while, as git's does."""

    def __init__(self) -> None:
        self.finished: list[str] = []

    def reset(self, base: str | None = None) -> None:
        pass

    def finish(self, change: str, client: Any, ttl: float) -> Changes | None:
        self.finished.append(change)
        time.sleep(0.2)
        return None


@dataclass
class Leased:
    """A supervisor on a fake instance, leased to session s1 through its keeper."""

    sup: Supervisor
    client: KeyStore
    workspace: SlowWorkspace
    keeper: LeaseKeeper


@pytest.fixture
def leased() -> Iterator[Leased]:
    sup = Supervisor(FakeInstance(BUILTIN_PROFILES["echo"]), "w1@h", [])
    sup.start()
    client = KeyStore()
    workspace = SlowWorkspace()
    keeper = LeaseKeeper(sup, client, lambda: None, workspace)  # type: ignore[arg-type]
    try:
        client.set(lease_key("w1@h"), "s1")
        assert keeper.take("s1")["ok"] == "s1"
        yield Leased(sup, client, workspace, keeper)
    finally:
        sup.stop()


def test_release_and_expiry_at_once_end_the_session_and_commit_it_once(leased: Leased) -> None:
    sup, client, keeper = leased.sup, leased.client, leased.keeper
    mark_end(client, "s1", keep=True)  # type: ignore[arg-type]
    del client.data[lease_key("w1@h")]  # the producer deletes its lease key, then
    # sends the release
    check = threading.Thread(target=keeper.check)  # the watcher sees the key gone
    check.start()
    assert keeper.drop("s1") in (
        {"ok": "s1"},
        {"error": "session s1 does not hold this worker"},
    )
    check.join()
    assert leased.workspace.finished == ["s1"]
    assert sup.session is None  # ended, and the instance is reset before reuse:
    eventually(lambda: sup.takes_shared_work and not sup.reset_pending, 5, "the reset")


@pytest.mark.parametrize("keep", [False, None])
def test_a_session_given_up_or_abandoned_by_its_producer_is_never_committed(
    leased: Leased, keep: bool | None
) -> None:
    """The producer gave the session up (its worker was frozen or cut off meanwhile), or
    went away without a word: the lease ends, and nothing of the session is committed."""
    if keep is not None:
        mark_end(leased.client, "s1", keep=keep)  # type: ignore[arg-type]
    del leased.client.data[lease_key("w1@h")]
    leased.keeper.check()
    assert leased.sup.session is None
    assert leased.workspace.finished == []
