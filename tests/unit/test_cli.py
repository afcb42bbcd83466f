"""The command line, in-process with click's CliRunner."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from toolfleet.cli.commands import cli
from toolfleet.cli.local_commands import parse_profiles

COMMANDS = [
    "up",
    "worker",
    "submit",
    "status",
    "check",
    "profiles",
    "demo",
    "restart",
    "session",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_profiles_lists_builtins():
    result = CliRunner().invoke(cli, ["profiles"])
    assert result.exit_code == 0
    for name in ("python", "bash", "sqlite3", "node", "echo", "aider"):
        assert name in result.output


def test_profile_specs():
    assert parse_profiles(("python=2", "bash"), 3) == {"python": 2, "bash": 3}
    assert parse_profiles((), 2) == {"python": 2}
    with pytest.raises(Exception, match="NAME=COUNT"):
        parse_profiles(("python=x",), 1)


def test_worker_with_an_unknown_profile_fails_clearly():
    result = CliRunner().invoke(cli, ["worker", "--profile", "pyhton"])
    assert result.exit_code == 1
    assert "unknown profile 'pyhton'" in result.output


def test_submit_refuses_bad_input_before_enqueueing(monkeypatch):
    monkeypatch.setenv("TOOLFLEET_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing there
    result = CliRunner().invoke(cli, ["submit", "--no-wait", "a\x03b"])
    assert result.exit_code == 1
    assert "PromptRejected" in result.output


def test_cancel_refuses_what_is_no_prompt_id_before_connecting():
    result = CliRunner().invoke(
        cli, ["cancel", "not-an-id"], env={"TOOLFLEET_BROKER_URL": "redis://127.0.0.1:1/0"}
    )
    assert result.exit_code == 1
    assert "'not-an-id' is no prompt id" in result.output
