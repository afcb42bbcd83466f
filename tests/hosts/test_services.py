"""Services on namespace hosts: a Sentinel failover, and git over git:// between hosts."""

from __future__ import annotations

from pathlib import Path

from tests.gitrepo import git, make_repo
from tests.helpers import eventually
from toolfleet.gitops import IDENTITY

from .net import Net
from .services import GitHost, RedisHost

__all__: list[str] = []


def test_sentinels_promote_the_replica_when_the_master_dies(net: Net) -> None:
    servers = RedisHost(net.host("redis")).start()
    ip = servers.host.ip
    assert servers.url.split(";")[0] == f"sentinel://{ip}:26379/0"
    assert servers.master_addr() == (ip, 6379)
    assert net.host("app").reachable(ip, 6379)
    with servers.client() as master:
        master.set("before-failover", "kept")
        assert master.wait(1, 1000) == 1  # the replica has it
    assert servers.kill_master() == 6379
    eventually(lambda: servers.master_addr() == (ip, 6380), 30, "the replica promoted")
    with servers.client() as master:
        assert master.info("replication")["role"] == "master"
        assert master.get("before-failover") == b"kept"


def seeded(net: Net, tmp_path: Path) -> GitHost:
    """A GitHost serving a repository with one commit (README.md) on main."""
    seed = tmp_path / "seed"
    make_repo(seed, {"README.md": "hello\n"})
    server = GitHost(net.host("git")).start(seed)
    assert server.branches() == {"main": git(seed, "rev-parse", "HEAD").strip()}
    return server


def test_a_host_clones_commits_and_pushes_over_git_protocol(net: Net, tmp_path: Path) -> None:
    server = seeded(net, tmp_path)
    dev = net.host("dev")
    dev.run(["git", "clone", "--quiet", server.url, "work"])
    work = dev.dir / "work"
    assert (work / "README.md").read_text() == "hello\n"
    (work / "new.txt").write_text("from dev\n")
    dev.run(["git", "checkout", "--quiet", "-b", "feature"], cwd=work)
    dev.run(["git", "add", "new.txt"], cwd=work)
    dev.run(["git", "commit", "--quiet", "-m", "from dev"], cwd=work, env=IDENTITY)
    sha = dev.run(["git", "rev-parse", "HEAD"], cwd=work).stdout.strip()
    assert not server.has_commit(sha)
    dev.run(["git", "push", "--quiet", "origin", "feature"], cwd=work)
    assert server.branches()["feature"] == sha
    assert server.has_commit(sha)
    assert set(server.branches()) == {"main", "feature"}


def test_a_cut_git_host_answers_no_one_until_restored(net: Net, tmp_path: Path) -> None:
    server = seeded(net, tmp_path)
    dev = net.host("dev")
    ls_remote = ["timeout", "8", "git", "ls-remote", server.url]
    assert "refs/heads/main" in dev.run(ls_remote).stdout
    server.host.cut()
    failed = dev.run(ls_remote, check=False, timeout=30)
    assert failed.returncode != 0, failed.stdout
    server.host.restore()
    eventually(
        lambda: dev.run(ls_remote, check=False, timeout=30).returncode == 0,
        30,
        "git ls-remote answering again once restored",
    )
