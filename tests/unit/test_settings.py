"""Typed settings from the environment."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from toolfleet.errors import ConfigError
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
    with pytest.raises(ConfigError, match=r"^TOOLFLEET_HEARTBEAT_INTERVAL: .*greater than"):
        Settings.from_env()
    with pytest.raises(ValidationError, match="heartbeat_interval"):
        Settings(heartbeat_interval=-1)


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


def test_sentinel_urls_need_a_master_and_sentinel_parts(monkeypatch):
    urls = "sentinel://:s3cret@10.0.0.1:26379/2;sentinel://:s3cret@10.0.0.2"
    monkeypatch.setenv("TOOLFLEET_BROKER_URL", urls)
    with pytest.raises(ConfigError, match="set TOOLFLEET_SENTINEL_MASTER"):
        Settings.from_env()
    monkeypatch.setenv("TOOLFLEET_SENTINEL_MASTER", "main")
    settings = Settings.from_env()
    assert settings.result_backend == urls
    assert "s3cret" not in repr(settings) and "s3cret" not in settings.redacted(urls)
    assert settings.redacted(urls).count("**") == 2  # every sentinel's password masked
    monkeypatch.setenv("TOOLFLEET_BROKER_URL", "sentinel://10.0.0.1;redis://10.0.0.2")
    with pytest.raises(ConfigError, match="every part of a sentinel URL"):
        Settings.from_env()


def test_sentinel_settings_reach_celery_kombu_and_our_clients():
    from toolfleet.broker.app import celery_config
    from toolfleet.broker.transport import FleetConnection, SentinelTransport, Transport
    from toolfleet.redisconn import redis_client, sentinel_hosts

    url = "sentinel://10.0.0.1:26380/3;sentinel://10.0.0.2"
    config = celery_config(Settings(broker_url=url, sentinel_master="main"))
    assert config["broker_transport_options"]["master_name"] == "main"
    assert config["result_backend_transport_options"]["master_name"] == "main"
    plain = celery_config(Settings(broker_url="redis://localhost/0"))
    assert "master_name" not in plain["broker_transport_options"]
    assert FleetConnection(url).get_transport_cls() is SentinelTransport
    assert FleetConnection("redis://localhost").get_transport_cls() is Transport
    assert sentinel_hosts(url) == [("10.0.0.1", 26380), ("10.0.0.2", 26379)]
    client = redis_client(url, "main")  # nothing connects until a command
    assert client.connection_pool.service_name == "main"
    assert client.connection_pool.connection_kwargs["db"] == 3
