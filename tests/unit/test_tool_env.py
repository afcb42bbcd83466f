"""A tool's environment is built from an allow-list: the harmless variables, the ones its
profile passes, its profile's own; never the fleet's secrets nor another profile's keys."""

from __future__ import annotations

from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool.spawn import tool_env

WORKER = {
    "PATH": "/usr/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
    "HTTPS_PROXY": "http://proxy:3128",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "TOOLFLEET_BROKER_URL": "redis://:s3cret@redis:6379/0",
    "TOOLFLEET_RESULT_BACKEND": "redis://:s3cret@redis:6379/0",
    "TOOLFLEET_WEB_TOKEN": "web-token-0123456789",
    "FLOWER_BASIC_AUTH": "ops:pw",
    "REDIS_PASSWORD": "s3cret",
    "ANTHROPIC_API_KEY": "sk-ant",
    "OPENAI_API_KEY": "sk-openai",
    "AIDER_MODEL": "gpt-x",
    "GEMINI_API_KEY": "g-key",
    "AWS_SECRET_ACCESS_KEY": "aws",
    "PS1": "$ ",
    "PYTHONSTARTUP": "/root/.pythonrc",
}


def env_of(profile: str) -> dict[str, str]:
    chosen = BUILTIN_PROFILES[profile]
    return tool_env(chosen.env, base=WORKER, instance_dir="/i", passed=chosen.pass_env)


def test_a_repl_gets_the_harmless_variables_and_nothing_else() -> None:
    env = env_of("bash")
    assert {k: env[k] for k in ("PATH", "LANG", "LC_ALL", "HOME", "HTTPS_PROXY")} == {
        k: WORKER[k] for k in ("PATH", "LANG", "LC_ALL", "HOME", "HTTPS_PROXY")
    }
    assert env["TERM"] == "dumb" and env["NO_COLOR"] == "1"
    secrets = ("s3cret", "web-token", "ops:pw", "sk-", "g-key", "aws", "gpt-x")
    assert not [k for k, v in env.items() if any(s in v for s in secrets)]
    assert "PS1" not in env and "PYTHONSTARTUP" not in env


def test_each_agent_gets_its_own_provider_s_variables_only() -> None:
    claude, codex, gemini, aider = (env_of(p) for p in ("claude", "codex", "gemini", "aider"))
    assert claude["ANTHROPIC_API_KEY"] == "sk-ant" and "OPENAI_API_KEY" not in claude
    assert codex["OPENAI_API_KEY"] == "sk-openai" and "ANTHROPIC_API_KEY" not in codex
    assert gemini["GEMINI_API_KEY"] == "g-key" and "OPENAI_API_KEY" not in gemini
    assert aider["AIDER_MODEL"] == "gpt-x" and aider["HOME"] == "/i"
    for env in (claude, codex, gemini, aider):
        assert not any(k.startswith(("TOOLFLEET_", "FLOWER_", "REDIS_", "AWS_")) for k in env)


def test_a_profile_cannot_pass_the_fleet_s_own_variables() -> None:
    env = tool_env({}, base=WORKER, passed=["*"])
    assert env["AWS_SECRET_ACCESS_KEY"] == "aws"  # "*" passes what the operator chose ...
    assert not any(k.startswith(("TOOLFLEET_", "FLOWER_", "REDIS_")) for k in env)  # not these
