"""Turns a tool's raw terminal output into clean text."""

from __future__ import annotations

import re

__all__ = ["clean_output", "render_line"]

_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
#: "erase to the end of the line" (CSI K / CSI 0 K), kept as one mark through the strip
_ERASE_EOL = re.compile(r"\x1b\[0?K")
_EOL_MARK = "\x00"


def render_line(line: str) -> str:
    """What a terminal shows for one line written with carriage returns, backspaces and
    erase-to-end: spinners and progress bars redrawn in place leave only their last
    frame (and text typed over them), never the frames themselves."""
    cells: list[str] = []
    col = 0
    for char in line:
        if char == "\r":
            col = 0
        elif char == "\b":
            col = max(0, col - 1)
        elif char == _EOL_MARK:
            del cells[col:]
        else:
            if col < len(cells):
                cells[col] = char
            else:
                cells.extend(" " * (col - len(cells)))
                cells.append(char)
            col += 1
    return "".join(cells).rstrip()


def clean_output(raw: bytes) -> str:
    """Decode (invalid bytes replaced), drop escape sequences, render each line redrawn
    in place (CR, BS) as a terminal shows it, trim end newlines."""
    text = raw.decode("utf-8", errors="replace")
    text = _ANSI.sub("", _ERASE_EOL.sub(_EOL_MARK, text.replace(_EOL_MARK, "")))
    text = text.replace("\r\n", "\n")
    if "\r" in text or "\b" in text:
        text = "\n".join(
            render_line(line) if ("\r" in line or "\b" in line) else line
            for line in text.split("\n")
        )
    return text.replace(_EOL_MARK, "").rstrip("\n")
