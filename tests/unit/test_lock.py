"""The committed locks (lock/) agree with what they lock: pyproject.toml's ranges, each
other, and the agents' package.json; every pin hashed, no download address recorded."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "lock"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)")


def pins(name: str) -> dict[str, str]:
    """package -> version of lock/NAME.txt (a package pinned under two markers: the last)."""
    found = {}
    for line in (LOCK / name).read_text().splitlines():
        if match := PIN.match(line):
            found[canonicalize_name(match[1])] = match[2]
    return found


def requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"]]
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    return [r for r in map(Requirement, wanted) if canonicalize_name(r.name) != "toolfleet"]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        ("test.txt", ("worker", "redis", "flower", "exporter", "test")),
        ("app.txt", ("worker", "redis", "flower", "exporter")),
    ],
)
def test_python_locks_pin_every_requirement_inside_its_range(lock, extras):
    locked = pins(lock)
    for requirement in requirements(*extras):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock} has no {name}: run scripts/lock (see ./run lock)"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {name}=={locked[name]}, outside pyproject.toml's {requirement}"
        )


def test_app_lock_is_the_test_lock_s_versions():
    test, app = pins("test.txt"), pins("app.txt")
    assert app, "app.txt pins nothing"
    assert {name: test.get(name) for name in app} == app


def test_aider_uv_and_compose_locks_pin_what_their_inputs_ask():
    for name, package in (("aider", "aider-chat"), ("uv", "uv"), ("compose", "podman-compose")):
        wanted = [
            Requirement(line)
            for line in (LOCK / f"{name}.in").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        locked = pins(f"{name}.txt")
        assert [r.name for r in wanted] == [package]
        assert wanted[0].specifier.contains(locked[package])


@pytest.mark.parametrize("lock", ["test.txt", "app.txt", "aider.txt", "uv.txt", "compose.txt"])
def test_every_pin_is_hashed_and_no_address_is_recorded(lock):
    text = (LOCK / lock).read_text()
    entries = re.split(r"\n(?=\S)", text.strip())
    for entry in entries:
        assert PIN.match(entry), entry[:80]
        assert "--hash=sha256:" in entry, f"{lock}: {entry.splitlines()[0]} has no hash"
    assert "://" not in text


def test_agents_lock_is_of_package_json_and_records_no_address():
    package = json.loads((LOCK / "agents" / "package.json").read_text())
    lock_text = (LOCK / "agents" / "package-lock.json").read_text()
    locked = json.loads(lock_text)
    assert locked["packages"][""]["dependencies"] == package["dependencies"]
    for name in package["dependencies"]:
        entry = locked["packages"][f"node_modules/{name}"]
        assert entry["version"] and entry["integrity"].startswith("sha512-"), name
    assert '"resolved"' not in lock_text
