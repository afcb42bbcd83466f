"""The config.toml written for Codex: valid TOML, unattended, no shell snapshot, no login
shell."""

from __future__ import annotations

import tomllib

from toolfleet.tool.codex import codex_config


def test_the_config_is_unattended_with_no_shell_snapshot_and_no_analytics() -> None:
    config = tomllib.loads(codex_config({}))
    assert config["approval_policy"] == "never"
    assert config["sandbox_mode"] == "danger-full-access"
    assert config["allow_login_shell"] is False
    assert config["features"] == {"shell_snapshot": False}
    assert config["analytics"] == {"enabled": False}
    assert "model_provider" not in config and "model" not in config


def test_an_endpoint_and_a_model_from_the_environment() -> None:
    env = {"CODEX_MODEL": "gpt-x", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    config = tomllib.loads(codex_config(env))
    assert config["model"] == "gpt-x" and config["model_provider"] == "endpoint"
    provider = config["model_providers"]["endpoint"]
    assert provider["base_url"] == "http://127.0.0.1:9/v1"
    assert provider["env_key"] == "OPENAI_API_KEY" and provider["wire_api"] == "responses"
    assert config["features"] == {"shell_snapshot": False}
