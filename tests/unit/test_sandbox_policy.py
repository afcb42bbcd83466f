"""What a confined tool may write and see: the policy each sandbox mode makes, the
installations shown again inside a hidden HOME, a worktree's git folders."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from toolfleet.profiles import BUILTIN_PROFILES
from toolfleet.tool import sandbox as sandbox_module
from toolfleet.tool.sandbox import SandboxPolicy, confine, program_folders, sandbox_for


@pytest.fixture(autouse=True)
def bwrap_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "sandbox_support", lambda: ("/bwrap", ""))


def test_each_mode_writes_where_it_says(tmp_path: Path) -> None:
    python = BUILTIN_PROFILES["python"]
    assert {p.sandbox for p in BUILTIN_PROFILES.values()} == {"auto"}
    work, home = tmp_path / "work", str(tmp_path / "inst")
    made, said = sandbox_for(python, home, str(work))
    assert made is not None and said == "auto"
    assert made[1].writable == (home, str(work)) and made[1].network == "none"
    strict = python.model_copy(update={"sandbox": "strict"})
    made, said = sandbox_for(strict, home, str(work))
    assert made is not None and said == "strict" and made[1].writable == (home,)
    made, _ = sandbox_for(python, home, str(Path.home()))  # started in ~: not all of it
    assert made is not None and made[1].writable == (home,)
    plain = python.model_copy(update={"sandbox": "none"})
    assert sandbox_for(plain, home, str(work)) == (None, "none")
    assert BUILTIN_PROFILES["aider"].network == "open"


def test_where_the_host_cannot_it_runs_plain_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sandbox_module, "sandbox_support", lambda: (None, "no bubblewrap"))
    assert sandbox_for(BUILTIN_PROFILES["node"], str(tmp_path), None) == (
        None,
        "none: no bubblewrap",
    )


def test_installations_inside_home_are_shown_again_but_not_home_or_its_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    for folder in (".pyenv/shims", ".local/bin", ".cargo/bin", "bin"):
        (home / folder).mkdir(parents=True)
    path = [str(home / f) for f in (".pyenv/shims", ".local/bin", ".cargo/bin", "bin")]
    monkeypatch.setenv("PATH", ":".join([*path, "/usr/bin"]))
    monkeypatch.setattr("sys.prefix", "/usr")
    monkeypatch.setattr("sys.base_prefix", "/usr")
    shown = program_folders((str(home),), [])
    # a pyenv or cargo installation whole; ~/.local only its bin; ~/bin itself
    assert set(shown) == {str(home / ".pyenv"), str(home / ".local/bin"), str(home / ".cargo")}
    assert set(shown) >= {str(home / ".local/bin")} and str(home) not in shown


def test_the_state_folder_stays_hidden_inside_a_shown_installation(tmp_path: Path) -> None:
    home, tool = tmp_path / "h", tmp_path / "h" / ".tool"
    state = tool / "state"
    state.mkdir(parents=True)
    policy = SandboxPolicy(("/w",), (str(home), str(state)), "none", (str(tool),))
    args = confine(["x"], policy, "/bwrap")
    shown = args.index("--ro-bind-try")
    assert args[shown + 1 : shown + 3] == [str(tool), str(tool)]
    # hidden again after the installation holding it is shown
    after = args[shown:]
    assert after[after.index("--tmpfs") : after.index("--tmpfs") + 2] == ["--tmpfs", str(state)]


def test_a_worktree_writes_its_own_git_folder_and_sees_the_repository_read_only(
    tmp_path: Path,
) -> None:
    repo, tree = tmp_path / "repo", tmp_path / "tree"

    def git(*args: str, cwd: Path = repo) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)

    repo.mkdir()
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    git("worktree", "add", "-q", "--detach", str(tree))
    profile = BUILTIN_PROFILES["bash"].model_copy(
        update={"sandbox": "strict", "workspace": "worktree", "repo": str(repo)}
    )
    made, _ = sandbox_for(profile, str(tmp_path / "inst"), str(tree))
    assert made is not None
    admin = str(repo / ".git" / "worktrees" / "tree")
    assert made[1].writable == (str(tmp_path / "inst"), str(tree), admin)
    assert str(repo / ".git") in made[1].visible and str(repo) not in made[1].writable


def test_a_checkout_and_venv_under_tmp_are_shown_through_the_tools_own_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    venv, package = tmp_path / "clone" / ".venv", tmp_path / "clone" / "src" / "toolfleet"
    agents = tmp_path / "clone" / ".agents"
    (venv / "bin").mkdir(parents=True)
    (agents / "node_modules" / ".bin").mkdir(parents=True)
    package.mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{venv / 'bin'}:{agents / 'node_modules' / '.bin'}:/usr/bin")
    monkeypatch.setattr("sys.prefix", str(venv))
    monkeypatch.setattr("sys.base_prefix", "/usr")
    shown = program_folders((str(tmp_path),), [str(package)])
    # an npm install whole (its node_modules), not only its .bin
    assert set(shown) == {str(venv), str(package), str(agents)}
