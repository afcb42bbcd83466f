"""Typed settings from the environment."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from toolfleet.settings import DEFAULT_BROKER_URL, Settings


def test_defaults_point_at_local_redis(monkeypatch):
    for var in ("TOOLFLEET_BROKER_URL", "TOOLFLEET_RESULT_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    s = Settings.from_env()
    assert s.broker_url == DEFAULT_BROKER_URL
    assert s.result_backend == DEFAULT_BROKER_URL
    assert s.heartbeat_interval == 2.0
    assert s.health_ttl == 6.0


def test_each_field_is_one_variable_read_when_asked(monkeypatch):
    import toolfleet.settings  # imported before the variables are set

    monkeypatch.setenv("TOOLFLEET_BROKER_URL", "redis://h:1/2")
    monkeypatch.setenv("TOOLFLEET_RESULT_BACKEND", "redis://h:1/3")
    monkeypatch.setenv("TOOLFLEET_HEARTBEAT_INTERVAL", "0.5")
    s = toolfleet.settings.Settings.from_env()
    assert (s.broker_url, s.result_backend, s.heartbeat_interval) == (
        "redis://h:1/2",
        "redis://h:1/3",
        0.5,
    )


def test_bad_values_are_clear_errors(monkeypatch):
    monkeypatch.setenv("TOOLFLEET_HEARTBEAT_INTERVAL", "-1")
    with pytest.raises(ValidationError, match="heartbeat_interval"):
        Settings.from_env()


def test_redacted_hides_passwords():
    s = Settings(broker_url="redis://:secret@h:6379/0")
    assert "secret" not in s.redacted(s.broker_url)


def test_an_empty_profiles_variable_means_none(monkeypatch):
    monkeypatch.setenv("TOOLFLEET_PROFILES", "")
    assert Settings.from_env().profiles is None


def test_passwords_never_show_in_repr_str_or_celerys_inspect_conf():
    from celery.utils.saferepr import saferepr
    from celery.utils.serialization import jsonify

    from toolfleet.broker import make_app

    secret = "pa55-w0rd-42"
    settings = Settings(broker_url=f"redis://:{secret}@h:6379/0")
    assert settings.broker_url.count(secret) == 1  # the real URL is still there to use
    for shown in (repr(settings), str(settings), saferepr(settings), f"{settings!r}"):
        assert secret not in shown and "redis://:**@h:6379/0" in shown
    app = make_app(settings)
    # what Celery's `inspect conf` (and Flower's Config tab) sends: conf.table + jsonify
    table = jsonify(app.conf.table(with_defaults=False), unknown_type_filter=saferepr)
    assert "toolfleet_settings" in table
    assert secret not in json.dumps(table)
