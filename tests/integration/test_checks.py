"""Checks and repair turns on real bash workers in git worktrees: the check runs in the
item's worktree after its steps; a failing check is fed back as a repair step; the change
is ready only when its check passed, rejected otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolfleet import Settings
from toolfleet.cli.local import EmbeddedRedis
from toolfleet.client.items import MapOutcome
from toolfleet.client.verify import CheckSpec

from ..gitrepo import make_repo
from .conftest import _fresh_settings
from .procs import Workers

#: the step: a header, and for items whose stem ends in 0 a line that does not compile
STEP = "sed -i '1i # DOC_ID: {stem}' {path}; case {stem} in *0) echo 'x = (' >> {path};; esac"
CHECK = "python3 -m py_compile {path} && ! grep -q '^x = ($' {path}"
#: the bash "agent"'s repair: it reads the check's output and drops the line it names
REPAIR = "grep -q SyntaxError <<'EOF' && sed -i '$d' {path}\n{check_output}\nEOF"


@pytest.fixture
def settings(redis_server: EmbeddedRedis, tmp_path: Path) -> Settings:
    profiles = tmp_path / "profiles.toml"
    repo = tmp_path / "repo"
    profiles.write_text(
        f'[profiles.bash-wt]\nextends = "bash"\nworkspace = "worktree"\nrepo = "{repo}"\n'
        'sandbox = "auto"\n',
        encoding="utf-8",
    )
    return _fresh_settings(redis_server, profiles=profiles)


def by_key(outcomes: list[MapOutcome]) -> dict[str, MapOutcome]:
    return {o.key: o for o in outcomes}


def test_a_failing_check_gets_repair_turns_and_only_passing_changes_are_ready(
    workers: Workers, tmp_path: Path
) -> None:
    names = make_repo(tmp_path / "repo", {f"m{i:02d}.py": f"x = {i}\n" for i in range(12)})
    workers.wait_ready(workers.start("bash-wt", 2))
    spec = CheckSpec(CHECK, timeout=60, repairs=1, repair=REPAIR)
    outcomes = by_key(list(workers.fleet.map(names, "bash-wt", steps=[STEP], check=spec)))
    assert set(outcomes) == set(names)
    for name, o in outcomes.items():
        broken = name.endswith("0.py")
        assert o.ok, o
        assert o.check is not None and o.check.passed and o.check.exit_status == 0
        assert o.repairs == (1 if broken else 0)
        assert len(o.steps) == 1 + o.repairs
        assert o.changes is not None and o.changes.state == "ready", o.changes
        assert o.changes.check is not None and o.changes.check.passed
        assert o.changes.repairs == o.repairs
        assert "x = (" not in o.changes.patch and "+# DOC_ID:" in o.changes.patch
    # without repair turns the broken ones are rejected, with the check's output
    names2 = [n for n in names if n.endswith("0.py")]
    spec0 = CheckSpec(CHECK, timeout=60, repairs=0)
    again = by_key(list(workers.fleet.map(names2, "bash-wt", steps=[STEP], check=spec0)))
    for o in again.values():
        assert not o.ok and o.error_type == "CheckFailed", o
        assert o.check is not None and not o.check.passed and "SyntaxError" in o.check.output
        assert o.changes is not None and o.changes.state == "rejected"
        assert o.to_record()["check"]["passed"] is False


def test_a_check_past_its_timeout_is_killed_and_fails(workers: Workers, tmp_path: Path) -> None:
    names = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    workers.wait_ready(workers.start("bash-wt", 1))
    spec = CheckSpec("sleep 30 & sleep 30", timeout=1)
    (o,) = workers.fleet.map(names, "bash-wt", steps=["echo y = 2 >> {path}"], check=spec)
    assert not o.ok and o.error_type == "CheckFailed"
    assert o.check is not None and o.check.exit_status is None
    assert "timeout" in o.check.output and o.check.duration_ms < 20_000
