"""Usage reports and budgets on real bash workers whose profile reads a cost line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from toolfleet import BudgetSpent, Settings
from toolfleet.cli.local import EmbeddedRedis
from toolfleet.models import Usage

from ..helpers import eventually
from .conftest import _fresh_settings
from .procs import Workers, env_for

PROFILES = r"""
[profiles.bash-cost]
extends = "bash"
usage_pattern = 'spent (?P<sent>\d+) tokens, \$(?P<cost>[\d.]+)'
"""


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path) -> Settings:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(PROFILES, encoding="utf-8")
    return _fresh_settings(redis_server, profiles=profiles)


def test_map_stops_sending_at_its_budget_and_says_so(workers: Workers, tmp_path: Path) -> None:
    (name,) = workers.start("bash-cost")
    workers.wait_ready([name])
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"key": f"k{i}", "text": f"echo 'spent 100 tokens, $0.4'; echo {i}"}) + "\n"
            for i in range(6)
        )
    )
    argv = [sys.executable, "-m", "toolfleet", "map", "-p", "bash-cost", "--jsonl", str(jsonl)]
    done = subprocess.run(
        [*argv, "--budget", "1", "--in-flight", "1", "--json"],
        env=env_for(workers.settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1, done.stderr
    assert [r["key"] for r in records] == ["k0", "k1", "k2"]  # 3 x 0.4 >= 1: then no more
    assert all(r["ok"] and r["usage"] == {"sent": 100, "received": 0, "cost": 0.4} for r in records)
    assert "budget reached: spent 1.2000 of 1 budget; 3 item(s) not sent" in done.stderr
    assert "3 not run (budget reached)" in done.stderr
    eventually(  # each worker sums its prompts' usage in its health record
        lambda: workers.fleet.status("bash-cost")[0].usage_total == Usage(sent=300, cost=1.2),
        10,
        "usage_total in the health record",
    )


def test_a_session_refuses_to_send_past_its_budget(workers: Workers) -> None:
    (name,) = workers.start("bash-cost")
    workers.wait_ready([name])
    with workers.fleet.session("bash-cost", budget=0.5) as session:
        first = session.send("echo 'spent 10 tokens, $0.3'").get(timeout=30)
        assert first.usage == Usage(sent=10, cost=0.3)
        session.send("echo 'spent 10 tokens, $0.3'").get(timeout=30)
        assert session.usage == Usage(sent=20, cost=0.6)
        with pytest.raises(BudgetSpent, match=re.escape("spent 0.6000 of its budget 0.5")):
            session.send("echo more")
