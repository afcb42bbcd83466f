"""The journal of a bulk run: one JSON line per finished item, so a re-run skips them."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from toolfleet.client.items import MapOutcome
from toolfleet.errors import ConfigError

__all__ = ["Journal"]


class Journal:
    """Append-only JSON lines, one per finished item; a re-run skips the keys recorded ok.

    Each line is written with one ``write`` and then fsync'ed, so an interrupted run
    loses nothing it recorded; a line torn by a crash is skipped when read back. While
    open for writing the file is locked, so two runs cannot share a journal.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.skipped_lines = 0  # unreadable (torn) lines seen by the last read()
        self._fd: int | None = None

    def read(self) -> list[dict[str, Any]]:
        """Every readable record, in order; unreadable lines are counted and skipped."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        records, bad = [], 0
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                bad += 1
                continue
            if (
                isinstance(record, dict)
                and isinstance(record.get("key"), str)
                and isinstance(record.get("ok"), bool)
            ):
                records.append(record)
            else:
                bad += 1
        if bad and not records:
            raise ConfigError(f"{self.path} is not a toolfleet journal (no record in it)")
        self.skipped_lines = bad
        return records

    def done(self) -> dict[str, str | None]:
        """Key -> prompt digest of every item recorded ok."""
        return {r["key"]: r.get("sha") for r in self.read() if r["ok"]}

    def unsettled(self) -> list[str]:
        """Sessions the run closed to keep their change (:meth:`intend`) that no later
        record names: the run stopped before it learnt what became of them."""
        records = self.read()
        settled = {r["changes"].get("id") for r in records if isinstance(r.get("changes"), dict)}
        closing = [r["closing"] for r in records if isinstance(r.get("closing"), str)]
        return [session for session in closing if session not in settled]

    def done_keys(self) -> set[str]:
        """Keys of the items recorded ok."""
        return set(self.done())

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> Journal:
        """Open for appending (creating the file); ConfigError if another run holds it."""
        if self._fd is not None:
            return self
        self.read()  # refuses a file that is not a journal before writing to it
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"journal {self.path} is in use by another run") from None
        size = os.fstat(fd).st_size
        if size:  # a torn last line must not swallow the first new one
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    os.write(fd, b"\n")
        self._fd = fd
        return self

    def write(self, outcome: MapOutcome, *, sha: str | None = None) -> None:
        """Append one outcome and fsync it."""
        record = outcome.to_record()
        record.update(sha=sha, at=round(time.time(), 3))
        self._append(record)

    def _append(self, record: dict[str, Any]) -> None:
        """One line, in one write (the file is opened to append), then fsync'ed."""
        if self._fd is None:
            self.open()
        assert self._fd is not None
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def intend(self, key: str, session: str) -> None:
        """Record that item ``key``'s session ``session`` is being closed to keep its
        change, before the worker records it: a run that stops before it hears back
        leaves a trace its re-run finds (:meth:`unsettled`). Read back as not ok."""
        self._append({"key": key, "ok": False, "closing": session, "at": round(time.time(), 3)})

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the lock
            self._fd = None

    def __enter__(self) -> Journal:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
