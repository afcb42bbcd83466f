"""The state ``toolfleet up`` keeps: its embedded Redis's password, readable by the user
only, found by the user's other commands for a local URL that names no password."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from toolfleet.settings import Settings
from toolfleet.state import insert_password, local_password, with_password


def test_a_password_is_made_once_kept_private_and_reused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert local_password(state, 6390) is None and not state.exists()
    made = local_password(state, 6390, create=True)
    assert made and len(made) >= 32
    assert local_password(state, 6390, create=True) == made == local_password(state, 6390)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "redis-6390.password").stat().st_mode) == 0o600
    assert local_password(state, 6391) is None


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("redis://localhost:6390/0", True),
        ("redis://127.0.0.1:6390/3", True),
        ("redis://localhost:6391/0", False),  # another port: another Redis
        ("redis://:given@localhost:6390/0", False),  # the URL's own password wins
        ("redis://redis.example:6390/0", False),  # not this machine
        ("rediss://localhost:6390/0", False),
        ("sentinel://localhost:26379", False),
    ],
)
def test_only_a_local_url_without_a_password_gets_the_kept_one(
    tmp_path: Path, url: str, found: bool
) -> None:
    password = local_password(tmp_path, 6390, create=True)
    assert password
    given = with_password(url, tmp_path)
    assert (given == insert_password(url, password)) is found
    assert given == url or found


def test_settings_from_the_environment_find_the_kept_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TOOLFLEET_BROKER_URL", "TOOLFLEET_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOOLFLEET_STATE_DIR", str(tmp_path))
    assert Settings.from_env().broker_url == "redis://localhost:6379/0"
    password = local_password(tmp_path, 6379, create=True)
    settings = Settings.from_env()
    assert settings.broker_url == f"redis://:{password}@localhost:6379/0"
    assert settings.result_backend == settings.broker_url
    assert password not in repr(settings)
    assert settings.to_env()["TOOLFLEET_STATE_DIR"] == str(tmp_path)
