"""Git repositories for the tests: run git, and make a committed repository of files."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

__all__ = ["git", "make_repo"]


def git(repo: Path, *args: str) -> str:
    """Run ``git ARGS`` in ``repo``; its output (CalledProcessError if it fails)."""
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def make_repo(root: Path, files: Mapping[str, str]) -> list[str]:
    """A new repository at ``root`` (branch main) with ``files`` (path: text) committed;
    their paths."""
    root.mkdir()
    git(root, "init", "--quiet", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "dev")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "start")
    return list(files)
