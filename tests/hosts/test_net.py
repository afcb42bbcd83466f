"""The namespace hosts themselves: reachability, cut and restore, freeze and thaw, teardown."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import eventually

from .alloc import bridge_name, links, namespace_pids, namespaces
from .net import Host, Net, can_connect

__all__: list[str] = []

PORT = 7000

SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, _ = server.accept()
    with conn:
        conn.sendall(sys.argv[3].encode() + b"\\n")
"""

CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as conn:
    print(conn.makefile().readline().strip())
"""


def serve(host: Host, word: str, port: int = PORT) -> subprocess.Popen[bytes]:
    """Start a TCP server on ``host`` that greets every connection with ``word``; once
    it listens (checked from the root namespace)."""
    proc = host.popen([sys.executable, "-c", SERVER, host.ip, str(port), word], log="server")
    eventually(lambda: can_connect(host.ip, port), 15, f"the server on {host.name}")
    return proc


def greeting(host: Host, ip: str, port: int = PORT) -> str:
    """What the server at ``ip:port`` says to a connection from ``host``."""
    argv = [sys.executable, "-c", CLIENT, ip, str(port)]
    return host.run(argv, timeout=30).stdout.strip()


def state(pid: int) -> str:
    """The state letter of process ``pid`` (R, S, T, ...) from /proc."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_hosts_reach_each_others_listener(net: Net) -> None:
    a, b = net.host("alpha"), net.host("beta")
    assert (a.ip, b.ip) == (f"10.77.{net.k}.2", f"10.77.{net.k}.3")
    serve(a, "from-alpha")
    serve(b, "from-beta")
    assert greeting(b, a.ip) == "from-alpha"
    assert greeting(a, b.ip) == "from-beta"
    assert not a.reachable(b.ip, PORT + 1)  # nothing listens there: refused


def test_cut_host_is_unreachable_until_restored(net: Net) -> None:
    a, b = net.host("alpha"), net.host("beta")
    server = serve(a, "hello")
    assert b.reachable(a.ip, PORT)
    a.cut()
    assert not can_connect(a.ip, PORT, timeout=1.0)
    assert not b.reachable(a.ip, PORT, timeout=1.0)
    assert server.poll() is None and server.pid in a.pids()  # cut off, still running
    a.restore()
    eventually(lambda: can_connect(a.ip, PORT), 15, "alpha reachable again from the root")
    assert greeting(b, a.ip) == "hello"


def test_frozen_host_answers_only_once_thawed(net: Net) -> None:
    a = net.host("alpha")
    serve(a, "awake")
    sleeper = a.popen(["sleep", "300"])
    # `ip netns exec` enters the namespace, then becomes sleep: in it only from then on
    eventually(lambda: sleeper.pid in a.pids(), 10, "sleep in the host's namespace")
    frozen = a.freeze()
    assert sleeper.pid in frozen
    eventually(lambda: all(state(pid) == "T" for pid in frozen), 5, "every process stopped")
    # the kernel still completes the handshake; the stopped server never answers
    with socket.create_connection((a.ip, PORT), timeout=5) as conn:
        conn.settimeout(1.0)
        try:
            said = conn.recv(100)
        except TimeoutError:
            said = b""
        assert said == b""
        assert a.thaw() == frozen
        assert all(state(pid) != "T" for pid in frozen)
        conn.settimeout(10)
        assert conn.recv(100) == b"awake\n"


def test_killed_host_has_no_process_left(net: Net) -> None:
    a = net.host("alpha")
    server = serve(a, "hi")
    a.popen(["sleep", "300"])
    a.freeze()  # a stopped process must die too
    a.kill()
    assert a.pids() == set()
    assert server.returncode is not None
    assert not can_connect(a.ip, PORT)


def test_close_leaves_nothing_behind(tmp_path: Path) -> None:
    with Net(tmp_path) as net:
        a, b = net.host("alpha"), net.host("a-rather-long-host-name")
        c = net.host("a-rather-long-host-name-2")
        assert len({a.veth, b.veth, c.veth}) == 3
        assert all(len(host.veth) <= 15 for host in (a, b, c))
        serve(a, "bye")
        b.popen(["sleep", "300"])
        b.freeze()
        pids = a.pids() | b.pids()
        assert len(pids) == 2
        names = {net.bridge, a.veth, b.veth, c.veth}
        assert names <= links()
        # half torn down already (as a failed test might leave it): close copes
        subprocess.run(["ip", "link", "del", c.veth], check=True)
        net.close()
        assert not {a.ns, b.ns, c.ns} & namespaces()
        assert not names & links()
        assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        # the host's address leads nowhere now (a guard route, while other Nets exist)
        routed = subprocess.run(["ip", "route", "get", a.ip], capture_output=True, text=True)
        assert f"dev {net.bridge}" not in routed.stdout
        net.close()  # again, and once more on leaving the block: nothing to do


def test_nets_side_by_side_get_their_own_subnets(tmp_path: Path) -> None:
    with Net(tmp_path / "one") as one, Net(tmp_path / "two") as two:
        assert one.k != two.k
        a, b = one.host("alpha"), two.host("alpha")
        assert a.ns != b.ns and a.veth != b.veth and a.ip != b.ip
        serve(a, "one")
        serve(b, "two")
        assert greeting(a, a.ip) == "one"
        # no route between two Nets: a host of one never reaches a host of the other
        assert not a.reachable(b.ip, PORT)


ORPHAN = """
import sys, time
from pathlib import Path
from tests.hosts.net import Net
net = Net(Path(sys.argv[1]))
host = net.host("orphan")
host.popen(["sleep", "300"])
print(net.k, host.ns, host.veth, flush=True)
time.sleep(300)
"""


def gone(pid: int) -> bool:
    """True when process ``pid`` has ended (a zombie left to init counts)."""
    try:
        return state(pid) == "Z"
    except FileNotFoundError:
        return True


def test_a_net_whose_process_died_is_torn_down_by_the_next(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-c", ORPHAN, str(tmp_path / "dead")]
    with subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, text=True) as dead:
        assert dead.stdout is not None
        k, ns, veth = dead.stdout.readline().split()
        orphans = namespace_pids(ns)
        assert len(orphans) == 1
        dead.kill()  # no close, no atexit: all of it stays behind
    assert ns in namespaces() and {bridge_name(int(k)), veth} <= links()
    with Net(tmp_path / "next") as after:
        assert ns not in namespaces() and veth not in links()
        # the slot is free again: gone, or this Net's now
        assert after.k == int(k) or bridge_name(int(k)) not in links()
        eventually(lambda: all(gone(pid) for pid in orphans), 10, "the orphan killed")
