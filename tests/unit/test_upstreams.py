"""Upstreams in the profiles file: validated, named by profiles, pointing agents home."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolfleet.errors import ConfigError
from toolfleet.gateway.upstream import GATEWAY_KEY, Upstream
from toolfleet.profiles import get_profile, get_upstream, load_profiles, load_upstreams

FILE = """
[upstreams.openai-main]
kind = "openai"
url = "https://api.openai.com/v1/"
rpm = 500
tpm = 200000
concurrency = 8
prices = { "gpt-4o*" = [2.5, 10.0], "*" = [1.0, 2.0] }

[upstreams.claude]
kind = "anthropic"
url = "https://api.anthropic.com"

[profiles.aider-gw]
extends = "aider"
upstream = "openai-main"
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "profiles.toml"
    file.write_text(FILE, encoding="utf-8")
    return file


def test_upstreams_load_and_profiles_name_them(path: Path) -> None:
    found = load_upstreams(path)
    assert sorted(found) == ["claude", "openai-main"]
    main = get_upstream(get_profile("aider-gw", path), path)
    assert main is not None and main.rpm == 500 and main.url == "https://api.openai.com/v1"
    assert main.origin == ("https", "api.openai.com", 443) and main.path == "/v1"
    assert main.price("gpt-4o-mini") == (2.5, 10.0) and main.price("o3") == (1.0, 2.0)
    assert get_upstream(get_profile("aider", path), path) is None


def test_a_profile_naming_an_unknown_upstream_is_refused_with_the_known_ones(path: Path) -> None:
    path.write_text(FILE + '[profiles.lost]\nextends = "aider"\nupstream = "nowhere"\n')
    with pytest.raises(ConfigError, match=r"upstream 'nowhere'.*defined: claude, openai-main"):
        load_profiles(path)  # any command that reads the file says so, before any worker


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('kind = "openai"\nurl = "ftp://x"', "http"),
        ('kind = "cohere"\nurl = "https://x"', "kind"),
        ('kind = "openai"\nurl = "https://x"\nrpm = 0', "rpm"),
        ('kind = "openai"\nurl = "https://x"\nlimit = 3', "limit"),
    ],
)
def test_bad_upstreams_are_refused_by_name(tmp_path: Path, table: str, problem: str) -> None:
    file = tmp_path / "p.toml"
    file.write_text(f"[upstreams.bad]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"upstreams\.bad is invalid: [^\n]*{problem}"):
        load_upstreams(file)


def test_agents_are_pointed_at_the_gateway_with_a_key_that_opens_nothing() -> None:
    openai = Upstream(name="o", kind="openai", url="https://api.openai.com/v1")
    env = openai.instance_env("http://127.0.0.1:5000")
    assert env == {
        "OPENAI_API_BASE": "http://127.0.0.1:5000/v1",
        "OPENAI_BASE_URL": "http://127.0.0.1:5000/v1",
        "OPENAI_API_KEY": GATEWAY_KEY,
    }
    claude = Upstream(name="c", kind="anthropic", url="https://api.anthropic.com")
    assert claude.instance_env("http://127.0.0.1:5000", hide_key=False) == {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:5000"
    }
