"""A fleet across hosts: Redis (master, replica, three Sentinels), a git host, worker hosts
each running ``toolfleet worker`` in its own directories, producer hosts running
``toolfleet map --apply`` in their own clone; and the check after a fault."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from toolfleet import Fleet, Settings
from toolfleet.cli.local import worker_command
from toolfleet.client.changes import ChangeBook
from toolfleet.gitops import IDENTITY

from ..faults.tally import Tally
from ..helpers import eventually
from .net import Host, Net
from .services import MASTER, GitHost, RedisHost

__all__ = ["PROFILE", "SESSION_TTL", "Cluster", "Outcome"]

#: the lease TTL of the cluster's sessions (short: a frozen host outlives it in seconds)
SESSION_TTL = 6.0

#: the profile of the rollout: worktrees of the git host's repository, at most once
PROFILE = "edit"
PROFILES = """
[profiles.edit]
extends = "bash"
workspace = "worktree"
repo = "{url}"
on_worker_lost = "fail"
# the run log lies outside the worktree: a confined tool could not append to it
sandbox = "none"
pass_env = ["RUNLOG"]
"""
#: an item: its file edited, a pause (the fault comes now), then its run logged
STEPS = (
    'echo "edited {stem}" >> {path!q}; sleep {pause}',
    'echo {stem} >> "$RUNLOG"',
)


@dataclass
class Outcome:
    """What a map (or a map and its resumption) did, read back from its JSON lines."""

    records: dict[str, dict[str, object]] = field(default_factory=dict)

    def read(self, out: Path) -> Outcome:
        """Take the JSON lines of ``out`` (a later record of an item wins; a journal's
        note of a session being closed is not an outcome)."""
        if out.exists():
            for line in out.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:  # a progress line, or one torn by a kill
                    continue
                if isinstance(record, dict) and "key" in record and "closing" not in record:
                    self.records[str(record["key"])] = record
        return self

    def ok(self) -> list[str]:
        """The keys of the items ok."""
        return [key for key, record in self.records.items() if record.get("ok")]


class Cluster:
    """The hosts of one fleet on ``net``: ``redis``, ``git``, ``workers`` (w1..wN) and
    ``producers`` (p1, p2); ``files`` items of the repository to edit."""

    def __init__(
        self, net: Net, workers: int = 2, files: int = 12, session_ttl: float = SESSION_TTL
    ) -> None:
        self.net = net
        self.redis = RedisHost(net.host("redis"))
        self.git = GitHost(net.host("git"))
        self.workers = [net.host(f"w{i + 1}") for i in range(workers)]
        self.producers = [net.host("p1"), net.host("p2")]
        self.names = [f"f{i:02d}.txt" for i in range(files)]
        self.session_ttl = session_ttl
        self.settings: Settings | None = None
        self.fleet: Fleet | None = None
        self.worker_procs: dict[str, subprocess.Popen[bytes]] = {}

    # ---- start -------------------------------------------------------------------------
    def start(self) -> Cluster:
        self.redis.start()
        seed = self.net.base / "seed"
        seed.mkdir()
        for name in self.names:
            (seed / name).write_text(f"file {name}\n", encoding="utf-8")
        for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "seed"]):
            subprocess.run(["git", *args], cwd=seed, check=True, env=self._env({}))
        self.git.start(seed)
        profiles = self.net.base / "profiles.toml"
        profiles.write_text(PROFILES.format(url=self.git.url), encoding="utf-8")
        self.settings = Settings(
            broker_url=self.redis.url,
            sentinel_master=MASTER,
            heartbeat_interval=1.0,  # a health record lives 3 s: a busy CI machine is no fault
            session_ttl=self.session_ttl,
            profiles=profiles,
        )
        self.fleet = Fleet(self.settings)
        for host in self.workers:
            self.start_worker(host)
        self.wait_ready(len(self.workers))
        return self

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        import os

        env = {**os.environ, **IDENTITY, **extra}
        if self.settings is not None:
            env.update(self.settings.to_env())
        return env

    def host_env(self, host: Host) -> dict[str, str]:
        """The environment of a process on ``host``: the fleet's settings, and its own
        home, state and temporary directories (nothing shared with another host)."""
        dirs = {"HOME": "home", "TOOLFLEET_STATE_DIR": "state", "TMPDIR": "tmp"}
        env = {}
        for var, sub in dirs.items():
            (host.dir / sub).mkdir(exist_ok=True)
            env[var] = str(host.dir / sub)
        env["RUNLOG"] = str(host.dir / "runs.log")
        return self._env(env)

    def start_worker(self, host: Host) -> None:
        argv = worker_command(PROFILE, host.name)
        proc = host.popen(argv, env=self.host_env(host), log="worker")
        self.worker_procs[host.name] = proc

    def wait_ready(self, count: int, timeout: float = 120.0) -> None:
        fleet = self.fleet
        assert fleet is not None

        def ready() -> bool:
            return sum(h.state == "ready" for h in fleet.status(PROFILE)) >= count

        eventually(ready, timeout, lambda: f"workers not ready; logs in {self.net.base}")

    def busy_on(self, host: Host) -> bool:
        """Whether ``host``'s worker holds an item now (a session)."""
        assert self.fleet is not None
        return any(
            h.worker.split("@")[0] == host.name and h.session is not None
            for h in self.fleet.status(PROFILE)
        )

    # ---- the producer --------------------------------------------------------------------
    def clone(self, host: Host) -> Path:
        """A checkout of the git host's repository on ``host`` (main checked out)."""
        checkout = host.dir / "checkout"
        host.run(["git", "clone", "-q", self.git.url, checkout], env=self._env({}))
        return checkout

    def map(self, host: Host, checkout: Path, pause: float = 2.0) -> subprocess.Popen[bytes]:
        """``toolfleet map -p edit --apply --journal`` of every file, on ``host`` in
        ``checkout``: its JSON lines to ``host.dir/map.jsonl``, running."""
        steps = [s.replace("{pause}", f"{pause:g}") for s in STEPS]
        argv = [sys.executable, "-m", "toolfleet", "map", "-p", PROFILE, "--json", "--apply"]
        argv += ["--retries", "2", "--in-flight", str(2 * len(self.workers))]
        argv += ["--journal", str(host.dir / "journal.jsonl")]
        argv += [a for s in steps for a in ("-s", s)]
        line = f"exec {shlex.join([*argv, *self.names])} >{host.dir}/map.jsonl 2>{host.dir}/map.err"
        return host.popen(["sh", "-c", line], env=self.host_env(host), cwd=checkout, log="map")

    # ---- the check ---------------------------------------------------------------------
    def account(self, tally: Tally, outcome: Outcome, runs_once: bool = True) -> Tally:
        """Count ``outcome`` into ``tally`` and check the fleet's promises: every item
        ok or a typed failure (none lost); every ok item's edit on the git host's main
        exactly once and a failed one's not at all; no change recorded whose commit the
        git host lacks, none left pending; with ``runs_once``, no item ran twice."""
        tally.submitted = len(self.names)
        for name in self.names:
            record = outcome.records.get(name)
            if record is None:
                tally.count(None)
            elif record["ok"]:
                tally.count("ok")
            else:
                tally.count(str(record.get("error_type") or "ToolfleetError"))
        runs: Counter[str] = Counter()
        for host in self.workers:
            log = host.dir / "runs.log"
            if log.exists():
                runs.update(log.read_text(encoding="utf-8").split())
        tally.ran_twice = sum(1 for n in runs.values() if n > 1) if runs_once else 0
        main = self.git.branches()["main"]
        for name in self.names:
            text = self._show(f"{main}:{name}")
            edits = text.count(f"edited {Path(name).stem}\n")
            wanted = 1 if outcome.records.get(name, {}).get("ok") else 0
            assert edits == wanted, f"{name}: {edits} edit(s) on main, {wanted} expected"
        assert self.fleet is not None
        book = ChangeBook(self.fleet.app.backend.client, 3600)
        for change in book.records():
            if change.commit is not None:
                assert self.git.has_commit(change.commit), f"{change.id}: commit not pushed"
                assert self.git.branches().get(change.branch) == change.commit
            assert change.state not in ("pending", "ready"), f"{change.id} left {change.state}"
            if change.state == "applied":
                assert change.commit is not None and self._landed(change.commit, main)
        assert tally.lost == 0, tally.show()
        assert tally.ran_twice == 0, tally.show()
        return tally

    def _landed(self, commit: str, main: str) -> bool:
        """Whether ``commit`` is in the history of ``main`` on the git host."""
        argv = ["git", "-C", str(self.git.repo), "merge-base", "--is-ancestor", commit, main]
        return subprocess.run(argv, capture_output=True).returncode == 0

    def _show(self, spec: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.git.repo), "show", spec], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def wait_map(self, proc: subprocess.Popen[bytes], timeout: float = 300.0) -> int:
        """The map's exit status, once it ended."""
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the map did not end in {timeout:g} s") from None

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.close()


def elapsed(start: float) -> float:
    return time.monotonic() - start
