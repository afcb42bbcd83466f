"""``toolfleet doctor`` says what the host offers and exits 1 naming what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from toolfleet.cli import cli
from toolfleet.tool import sandbox


def test_a_host_with_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "sandbox_support", lambda: ("/usr/bin/bwrap", ""))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    done = CliRunner().invoke(cli, ["doctor"], env={"TOOLFLEET_STATE_DIR": str(state)})
    assert done.exit_code == 0, done.output
    assert "sandbox strict         yes  bubblewrap /usr/bin/bwrap" in done.output
    assert f"{state} (0700)" in done.output


def test_what_is_missing_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "sandbox_support", lambda: (None, "no bubblewrap (install)"))
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    done = CliRunner().invoke(cli, ["doctor"], env={"TOOLFLEET_STATE_DIR": str(state)})
    assert done.exit_code == 1
    assert "sandbox strict         NO   no bubblewrap (install)" in done.output
    assert "0755: others can read it" in done.output
