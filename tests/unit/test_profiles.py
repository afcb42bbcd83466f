"""Built-in profiles and profiles from TOML."""

from __future__ import annotations

import pytest

from toolfleet.errors import ConfigError
from toolfleet.profiles import BUILTIN_PROFILES, get_profile, load_profiles


def test_builtins():
    assert {"python", "bash", "sqlite3", "node", "echo", "aider"} <= set(BUILTIN_PROFILES)
    for profile in BUILTIN_PROFILES.values():
        if profile.detector == "marker" and profile.setup:
            assert "{marker}" in profile.setup[0], profile.name
        if profile.detector == "sentinel":
            assert "{head}" in profile.sentinel and "{tail}" in profile.sentinel


def test_toml_adds_and_extends(tmp_path):
    path = tmp_path / "profiles.toml"
    path.write_text(
        """
[profiles.slowpy]
extends = "python"
prompt_timeout = 5
max_prompts = 10

[profiles.repl]
argv = ["myrepl", "--plain"]
detector = "quiescence"
quiet_ms = 200
""",
        encoding="utf-8",
    )
    profiles = load_profiles(path)
    assert profiles["slowpy"].argv == BUILTIN_PROFILES["python"].argv
    assert profiles["slowpy"].prompt_timeout == 5
    assert profiles["slowpy"].max_prompts == 10
    assert profiles["repl"].detector == "quiescence"
    assert "python" in profiles


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[profiles.x]\nargv = []\n", "profiles.x is invalid"),
        ("[profiles.x]\nextends = 'nope'\n", "unknown profile 'nope'"),
        ("[profiles.x]\nargv = ['a']\nbogus = 1\n", "bogus"),
        ("not toml [", "cannot read"),
    ],
)
def test_bad_toml_is_a_config_error(tmp_path, text, match):
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        load_profiles(path)


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ConfigError, match="known profiles: aider, bash"):
        get_profile("pyhton")
