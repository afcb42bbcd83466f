"""The deployment files, checked offline: no Docker engine, no network.

docker-compose.yml is validated against the Compose specification's JSON schema, every
toolfleet/celery command in it (and in the Dockerfile and docs/deploy.md) must be a real
command with real options, and .env.example must match the variables the file uses.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from toolfleet.profiles import BUILTIN_PROFILES, load_profiles, load_upstreams
from toolfleet.settings import Settings

from ..flower_options import assert_flower_options

ROOT = Path(__file__).resolve().parents[2]
WORKERS = {
    "worker-python": ("python", 2),
    "worker-bash": ("bash", 1),
    "worker-aider": ("aider-wt", 1),
}
#: the profiles the deployment adds (mounted at /etc/toolfleet/profiles.toml)
DEPLOY_PROFILES = ROOT / "deploy" / "profiles.toml"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


TOOLFLEET_SERVICES = [*WORKERS, "flower", "exporter", "web", "producer"]

# `${NAME...}` or `$NAME` as Compose interpolates it (`$$` is a literal dollar)
_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
# `NAME=value` or, for an optional variable, `# NAME=value`
_ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


# ---- helpers ---------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def referenced_variables(text: str) -> set[str]:
    """Variables Compose would interpolate in ``text`` (nested defaults included)."""
    text = text.replace("$$", "")
    return {braced or bare for braced, bare in _REFERENCE.findall(text)}


def passed_through(service: dict[str, Any]) -> set[str]:
    """``environment`` keys without a value: taken from .env or the shell, if set."""
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is written as a mapping"
    return {key for key, value in env.items() if value is None}


def env_example() -> list[tuple[str, str, bool, str]]:
    """(name, value, active, comment above it) for each variable line of .env.example."""
    entries = []
    previous = ""
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            entries.append((match[2], match[3], match[1] is None, previous))
        previous = line.strip()
    return entries


def argv(command: Any) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def options(args: list[str]) -> list[str]:
    """The long and short options in ``args`` (``--port=5555`` -> ``--port``)."""
    return [a.split("=", 1)[0] for a in args if a.startswith("-") and a != "-"]


@functools.cache
def toolfleet_help(subcommand: str) -> str:
    """``toolfleet SUBCOMMAND --help`` (``subcommand`` may be ``group command``)."""
    proc = subprocess.run(
        [sys.executable, "-m", "toolfleet", *subcommand.split(), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, f"toolfleet {subcommand} --help: {proc.stderr or proc.stdout}"
    return proc.stdout


def assert_real_toolfleet_command(args: list[str], where: str) -> None:
    assert args[0] == "toolfleet" and len(args) > 1, where
    subcommand = args[1]
    help_text = toolfleet_help(subcommand)
    rest = args[2:]
    if "\nCommands:\n" in help_text and rest and not rest[0].startswith("-"):
        subcommand = f"{subcommand} {rest[0]}"  # a group: its command's options
        help_text, rest = toolfleet_help(subcommand), rest[1:]
    assert f"Usage: toolfleet {subcommand}" in help_text, help_text
    for option in options(rest):
        pattern = rf"(?<![\w-]){re.escape(option)}(?![\w-])"
        assert re.search(pattern, help_text), f"{where}: toolfleet {subcommand} has no {option}"


def compose_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every service command and healthcheck test in the compose file."""
    found = []
    for name, service in services().items():
        if "command" in service:
            found.append((f"{name}.command", argv(service["command"])))
        test = service.get("healthcheck", {}).get("test")
        if test is not None:
            args = argv(test)
            if args[0] in ("CMD", "CMD-SHELL"):
                args = argv(args[1]) if args[0] == "CMD-SHELL" else args[1:]
            found.append((f"{name}.healthcheck", args))
    return found


def doc_blocks(language: str) -> list[str]:
    """The ```language code blocks of docs/deploy.md (also those indented in lists)."""
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    blocks = re.findall(rf"^([ \t]*)```{language}\n(.*?)^\1```", text, re.S | re.M)
    return [textwrap.dedent(block) for _, block in blocks]


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation of ``${A}``, ``${A:-default}``, ``${A:?error}`` (nested)."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if value.startswith("${", j):
                    depth, j = depth + 1, j + 2
                else:
                    depth, j = depth - (value[j] == "}"), j + 1
            match = re.fullmatch(r"([A-Za-z_]\w*)(?:(:-|:\?)(.*))?", value[i + 2 : j - 1], re.S)
            assert match, value
            name, op, rest = match.groups()
            current = env.get(name, "")
            if op == ":-" and not current:
                current = interpolate(rest, env)
            elif op == ":?" and not current:
                raise KeyError(f"{name}: {rest}")
            out.append(current)
            i = j
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def active_example_env() -> dict[str, str]:
    return {name: value for name, value, active, _ in env_example() if active}


# ---- the compose file ------------------------------------------------------------------


def test_compose_file_parses_and_has_the_services():
    assert set(services()) >= {"redis", "flower", "producer", *WORKERS}
    assert compose()["volumes"].keys() >= {"redis-data", "aider-repo"}


def test_compose_file_validates_against_the_compose_spec():
    assert CHECK_JSONSCHEMA.exists(), f"{CHECK_JSONSCHEMA} (pip install check-jsonschema)"
    proc = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok" in proc.stdout


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path):
    """Control: the validator really validates (a misspelt service key fails)."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text(encoding="utf-8").replace("stop_grace_period:", "stop_grace:", 1)
    broken.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "stop_grace" in proc.stdout


@pytest.mark.parametrize(
    ("where", "args"),
    [c for c in compose_commands() if c[1][0] == "toolfleet"],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_toolfleet_commands_in_compose_are_real(where, args):
    assert_real_toolfleet_command(args, where)


def test_every_toolfleet_service_runs_a_toolfleet_or_celery_command():
    by_place = dict(compose_commands())
    for name in TOOLFLEET_SERVICES:
        assert by_place[f"{name}.command"][0] in ("toolfleet", "celery"), name
    assert sum(1 for _, args in compose_commands() if args[0] == "toolfleet") >= 7


def test_workers_are_replicated_healthchecked_and_stop_gracefully():
    example = active_example_env()
    known = load_profiles(DEPLOY_PROFILES)
    for name, (profile, replicas) in WORKERS.items():
        service = services()[name]
        command = [interpolate(a, example) for a in argv(service["command"])]
        assert command == ["toolfleet", "worker", "--profile", profile]
        assert profile in known
        assert service["deploy"]["replicas"] == replicas, name
        assert "container_name" not in service, f"{name} is replicated"
        test = [interpolate(a, example) for a in argv(service["healthcheck"]["test"])]
        assert test == ["CMD", "toolfleet", "check", "--profile", profile, "--this-host"], name
        assert service["stop_grace_period"] == "30s"
        assert service["restart"] == "unless-stopped"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "build" in service and "image" in service, name
    aider_build = services()["worker-aider"]["build"]
    assert str(aider_build["args"]["WITH_AIDER"]) == "1"
    assert str(services()["worker-python"]["build"]["args"]["WITH_AIDER"]) == "0"


def test_redis_is_persistent_and_needs_a_password():
    redis = services()["redis"]
    assert redis["image"] == "${REDIS_IMAGE:-redis:7-alpine}"  # made from Debian offline
    command = argv(redis["command"])
    assert command[command.index("--dir") + 1] == "/data"  # any image's Redis writes there
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--requirepass") + 1] == "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
    assert "redis-data:/data" in redis["volumes"]
    test = " ".join(argv(redis["healthcheck"]["test"]))
    assert "redis-cli -a" in test and "ping" in test
    assert "ports" not in redis, "Redis stays on the compose network unless overridden"


def test_flower_has_basic_auth_and_a_real_command():
    flower = services()["flower"]
    args = argv(flower["command"])
    assert args[:2] == ["toolfleet", "flower"]
    assert_real_toolfleet_command(args, "flower")
    assert {"localhost", "127.0.0.1"} <= {args[i + 1] for i, a in enumerate(args) if a == "--host"}
    from toolfleet.cli.local import FLOWER_TASKS_COLUMNS

    assert flower["environment"]["FLOWER_TASKS_COLUMNS"] == FLOWER_TASKS_COLUMNS
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"\$\{FLOWER_USER:\?[^}]*\}:\$\{FLOWER_PASSWORD:\?[^}]*\}", auth)
    assert any(str(p).endswith(":5555") for p in flower["ports"])
    # Flower's options are tornado options: every FLOWER_* must be one
    names = ["port"]
    names += [k[len("FLOWER_") :].lower() for k in flower["environment"] if k.startswith("FLOWER_")]
    assert "port" in names and "basic_auth" in names
    assert_flower_options(names)


def test_web_ports_are_published_on_loopback_only():
    for name in ("flower", "exporter", "web"):
        for port in services()[name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} everywhere"


def test_the_producer_is_an_opt_in_example():
    producer = services()["producer"]
    assert producer["profiles"] == ["tools"]
    args = argv(producer["command"])
    assert args[:2] == ["toolfleet", "submit"]
    assert producer["depends_on"]["worker-python"]["condition"] == "service_healthy"


def test_every_toolfleet_service_gets_every_setting():
    settings = {f"TOOLFLEET_{name.upper()}" for name in Settings.model_fields}
    for name in TOOLFLEET_SERVICES:
        env = services()[name]["environment"]
        given = {k for k in env if k.startswith("TOOLFLEET_")}
        assert given <= settings, f"{name}: not settings: {given - settings}"
        assert given == settings, f"{name}: settings not configurable: {settings - given}"


def test_compose_defaults_make_valid_settings(monkeypatch):
    """With .env.example's values, each service's environment is what Settings expects."""
    example = active_example_env()
    for name in TOOLFLEET_SERVICES:
        env = {
            k: interpolate(v, example)
            for k, v in services()[name]["environment"].items()
            if v is not None and k.startswith("TOOLFLEET_")
        }
        for key in [k for k in os.environ if k.startswith("TOOLFLEET_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings.from_env()
        assert settings.broker_url == f"redis://:{example['REDIS_PASSWORD']}@redis:6379/0"
        assert settings.result_backend == settings.broker_url
        mounted = name in ("worker-aider", "producer")  # they know deploy/profiles.toml
        assert settings.profiles == (Path("/etc/toolfleet/profiles.toml") if mounted else None)
        assert settings.heartbeat_interval > 0


def test_the_interpolation_helper_follows_compose():
    env = {"A": "a", "EMPTY": ""}
    assert interpolate("x${A}y", env) == "xay"
    assert interpolate("${EMPTY:-d${A}}", env) == "da"
    assert interpolate("${A:-d}", env) == "a"
    assert interpolate("$${A}", env) == "${A}"
    with pytest.raises(KeyError, match="set B"):
        interpolate("${B:?set B}", env)


def test_the_compose_file_refuses_to_start_without_secrets():
    text = COMPOSE.read_text(encoding="utf-8")
    for name in ("REDIS_PASSWORD", "FLOWER_USER", "FLOWER_PASSWORD", "WEB_TOKEN"):
        assert re.search(rf"\$\{{{name}:\?", text), f"{name} is not required"


def test_aider_worker_gets_its_settings_and_a_repository():
    aider = services()["worker-aider"]
    through = passed_through(aider)
    assert {"AIDER_MODEL", "AIDER_OPENAI_API_BASE", "AIDER_EDIT_FORMAT"} <= through
    assert "OPENAI_API_KEY" in through or "AIDER_OPENAI_API_KEY" in through
    assert aider["working_dir"] == "/repo"
    assert any(str(v).endswith(":/repo") for v in aider["volumes"])
    home = re.search(r"^ENV HOME=(\S+)$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert home, "the Dockerfile sets HOME"
    for key in ("AIDER_INPUT_HISTORY_FILE", "AIDER_CHAT_HISTORY_FILE"):
        assert aider["environment"][key].startswith(home[1] + "/")


def test_aider_agents_work_in_worktrees_of_the_repository(monkeypatch):
    """aider-wt: a worktree profile of aider; its repository is /repo unless AIDER_REPO
    names another; the producer shares /repo and the profiles to run and review rollouts."""
    mount = "./deploy/profiles.toml:/etc/toolfleet/profiles.toml:ro"
    for name in ("worker-aider", "producer"):
        service = services()[name]
        assert mount in service["volumes"] and service["working_dir"] == "/repo", name
        assert interpolate(service["environment"]["AIDER_REPO"], {}) == "/repo"
    profile = load_profiles(DEPLOY_PROFILES)["aider-wt"]
    assert profile.workspace == "worktree" and profile.argv == BUILTIN_PROFILES["aider"].argv
    monkeypatch.setenv("AIDER_REPO", "/repo")
    assert profile.repository() == "/repo"


# ---- .env.example ----------------------------------------------------------------------


def test_env_example_lists_every_variable_the_compose_file_uses():
    listed = {name for name, *_ in env_example()}
    used = referenced_variables(COMPOSE.read_text(encoding="utf-8"))
    for service in services().values():
        used |= passed_through(service)
    assert "REDIS_PASSWORD" in used and "AIDER_MODEL" in used
    assert used - listed == set(), f"missing from .env.example: {sorted(used - listed)}"


def test_every_env_example_variable_is_used_or_documented():
    compose_text = COMPOSE.read_text(encoding="utf-8")
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    for name, *_ in env_example():
        assert re.search(rf"\b{name}\b", compose_text) or re.search(rf"\b{name}\b", doc), name


def test_env_example_entries_are_commented_and_safe():
    entries = env_example()
    names = [name for name, *_ in entries]
    assert len(names) == len(set(names)), "a variable is listed twice"
    for name, value, _active, comment in entries:
        assert comment.startswith("#") and len(comment) > 10, f"{name} has no comment above it"
        assert not _ENV_LINE.match(comment), f"{name} has no comment above it"
        assert not re.search(r"sk-[A-Za-z0-9]{20,}", value), f"{name} looks like a real key"
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text(encoding="utf-8")))
    assert required == {"REDIS_PASSWORD", "FLOWER_USER", "FLOWER_PASSWORD", "WEB_TOKEN"}
    active = active_example_env()
    assert required <= active.keys(), "cp .env.example .env must give a working config"
    for name in ("REDIS_PASSWORD", "FLOWER_PASSWORD", "WEB_TOKEN"):
        assert "change-me" in active[name], f"{name} placeholder must be obviously fake"
    # the password is part of the broker URL
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", active["REDIS_PASSWORD"])


def test_env_example_never_sets_a_passed_through_variable_empty():
    """An empty AIDER_EDIT_FORMAT or TOOLFLEET_PROFILES would be passed on and break."""
    through = set().union(*(passed_through(s) for s in services().values()))
    assert through
    for name, value, active, _ in env_example():
        if name in through:
            assert not active or value, f"{name}= (empty) would reach the containers"


# ---- Dockerfile and .dockerignore ------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, rest = line.strip().partition(" ")
            result.append((instruction.upper(), rest.strip()))
    return result


def test_dockerfile_base_user_and_command():
    instructions = dockerfile_instructions()
    assert instructions[:2] == [("ARG", "BASE_IMAGE=python:3.11-slim"), ("FROM", "${BASE_IMAGE}")]
    users = [args for ins, args in instructions if ins == "USER"]
    assert users, "the image declares a USER"
    assert users[-1].split(":")[0] not in ("root", "0"), "the image runs as non-root"
    cmd = [json.loads(args) for ins, args in instructions if ins == "CMD"][-1]
    assert cmd == ["toolfleet", "worker", "--profile", "python"]
    assert_real_toolfleet_command(cmd, "Dockerfile CMD")
    entrypoint = [json.loads(args) for ins, args in instructions if ins == "ENTRYPOINT"][-1]
    assert entrypoint[0] == "tini"


def test_dockerfile_installs_the_package_with_its_extras():
    runs = " ".join(args for ins, args in dockerfile_instructions() if ins == "RUN")
    match = re.search(r"pip install --no-deps \"?\.\[([\w,-]+)\]\"?", runs)
    assert match, "the Dockerfile pip-installs the package itself"
    # its dependencies come from the lock the tests ran with, checked against its hashes
    assert "pip install --require-hashes -r lock/app.txt" in runs
    extras = set(match[1].split(","))
    assert {"worker", "flower"} <= extras  # flower: the flower service runs this image
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert extras <= pyproject["project"]["optional-dependencies"].keys()
    copied = " ".join(args for ins, args in dockerfile_instructions() if ins == "COPY")
    for needed in ("pyproject.toml", "README.md", "src", "lock/app.txt"):  # README: readme
        assert needed in copied


def test_dockerfile_installs_every_builtin_tool():
    text = DOCKERFILE.read_text(encoding="utf-8")
    runs = " ".join(args for ins, args in dockerfile_instructions() if ins == "RUN")
    apt = set()
    for match in re.finditer(r"apt-get install -y --no-install-recommends ([\w\s.+-]+?);", runs):
        apt |= set(match[1].split())
    debian_package = {"sqlite3": "sqlite3", "node": "nodejs"}
    in_base_image = {"{python}", "python3", "bash"}
    for profile in BUILTIN_PROFILES.values():
        program = profile.argv[0]
        if program in in_base_image:
            continue
        if program == "aider":
            assert re.search(r'"\$WITH_AIDER" = "1"', text)
            assert "pip install --require-hashes -r /opt/lock/aider.txt" in runs
            assert "git" in apt, "aider needs git"
            continue
        if program in ("claude", "gemini", "codex"):
            package = {
                "claude": "@anthropic-ai/claude-code",
                "gemini": "@google/gemini-cli",
                "codex": "@openai/codex",
            }
            assert re.search(r'"\$WITH_AGENTS" = "1"', text)
            assert "npm ci" in runs, "the agents are installed from their lock"
            locked = json.loads((ROOT / "lock/agents/package.json").read_text(encoding="utf-8"))
            assert package[program] in locked["dependencies"]
            assert f"node_modules/.bin/{program}" in runs
            assert "npm" in apt
            continue
        assert program in debian_package, f"profile {profile.name}: how is {program} installed?"
        assert debian_package[program] in apt, f"{debian_package[program]} is not installed"
    assert "tini" in apt
    assert re.search(r"^ARG WITH_AIDER=0$", text, re.M)
    assert re.search(r"^ARG WITH_AGENTS=0$", text, re.M)


def test_dockerignore_keeps_the_context_small_and_secret_free():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (".venv", ".git", "bench/out", ".env", ".pytest_cache", ".mypy_cache"):
        assert needed in patterns, needed
    for copied in ("src", "pyproject.toml", "README.md"):
        assert copied not in patterns and f"/{copied}" not in patterns


# ---- docs/deploy.md --------------------------------------------------------------------


def doc_toolfleet_commands() -> list[list[str]]:
    """``toolfleet ...`` in the doc's bash blocks and inline code, as argv lists."""
    found = []
    prose = re.sub(
        r"^[ \t]*```.*?^[ \t]*```", "", DEPLOY_DOC.read_text(encoding="utf-8"), flags=re.S | re.M
    )
    inline = re.findall(r"`([^`\n]+)`", prose)
    for block in [*doc_blocks("bash"), *inline]:
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            if "toolfleet" in words[:-1]:  # not `toolfleet` alone: that is the user
                found.append(words[words.index("toolfleet") :])
    return found


def test_doc_toolfleet_commands_are_real():
    commands = doc_toolfleet_commands()
    assert {args[1] for args in commands} >= {"up", "submit", "status", "check", "restart"}
    for args in commands:
        assert_real_toolfleet_command(args, f"docs/deploy.md: {' '.join(args)}")
    assert ["toolfleet", "up", "--profile", "python=2", "--profile", "bash=1", "--flower"] in (
        commands
    )


def test_doc_profile_example_loads_and_the_override_runs_it(tmp_path):
    block, upstreams = doc_blocks("toml")
    path = tmp_path / "upstreams.toml"
    path.write_text(upstreams, encoding="utf-8")
    assert list(load_upstreams(path)) == ["openai-main"]
    path = tmp_path / "profiles.toml"
    path.write_text(block, encoding="utf-8")
    profiles = load_profiles(path)
    assert set(profiles) > set(BUILTIN_PROFILES)
    run = set()
    for block in doc_blocks("yaml"):
        for service in yaml.safe_load(block)["services"].values():
            for args in (service.get("command"), service.get("healthcheck", {}).get("test")):
                if args and "--profile" in argv(args):
                    run.add(argv(args)[argv(args).index("--profile") + 1])
    assert run - set(BUILTIN_PROFILES), "the override example runs a new profile"
    assert run <= set(profiles), f"profiles the example does not define: {run - set(profiles)}"


def test_doc_compose_examples_validate(tmp_path):
    blocks = doc_blocks("yaml")
    assert blocks
    for i, block in enumerate(blocks):
        data = yaml.safe_load(block)
        assert set(data["services"]) <= set(services()) | {"worker-py-recycled"}
        path = tmp_path / f"override{i}.yml"
        path.write_text(block, encoding="utf-8")
        proc = subprocess.run(
            [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for name, service in data["services"].items():
            if "command" in service and argv(service["command"])[0] == "toolfleet":
                assert_real_toolfleet_command(argv(service["command"]), f"docs {name}")


def test_doc_covers_every_service_and_the_basics():
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    for name in services():
        assert f"`{name}`" in doc, name
    for phrase in (
        "docker compose up -d",
        "--scale worker-python=",
        "toolfleet status",
        ":5555",
        "rediss://",
        "TOOLFLEET_PROFILES",
        "docker compose down",
    ):
        assert phrase in doc, phrase
