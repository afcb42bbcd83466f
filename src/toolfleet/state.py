"""The fleet's state on this machine (readable by its user only): the embedded Redis's
password, which ``toolfleet up`` makes and every other command of the user finds."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote, urlparse, urlunparse

__all__ = [
    "LOCAL_HOSTS",
    "default_state_dir",
    "insert_password",
    "local_password",
    "with_password",
]

#: the names of this machine (loopback): a Redis here, or a server that answers only here
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/toolfleet``, or ``~/.local/state/toolfleet``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "toolfleet"


def _password_file(state_dir: Path, port: int) -> Path:
    return state_dir / f"redis-{port}.password"


def local_password(state_dir: Path, port: int, *, create: bool = False) -> str | None:
    """The password of the embedded Redis on ``port`` kept in ``state_dir``; with
    ``create``, a new random one is made (and kept, mode 0600) when there is none."""
    path = _password_file(state_dir, port)
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if found or not create:
        return found or None
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    password = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


def with_password(url: str, state_dir: Path) -> str:
    """``url`` with the kept password of its Redis when it is a ``redis://`` URL of this
    machine that names none and ``toolfleet up`` keeps one for its port; else ``url``."""
    parsed = urlparse(url)
    if (
        parsed.scheme != "redis"
        or parsed.hostname not in LOCAL_HOSTS
        or parsed.username
        or parsed.password
    ):
        return url
    password = local_password(state_dir, parsed.port or 6379)
    return insert_password(url, password) if password else url


def insert_password(url: str, password: str) -> str:
    """``url`` (a ``redis://`` URL naming no user or password) with ``password``."""
    parsed = urlparse(url)
    return urlunparse(parsed._replace(netloc=f":{quote(password, safe='')}@{parsed.netloc}"))
