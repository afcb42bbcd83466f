"""A tiny scripted interactive tool for tests: echoes lines, with a few ':' commands.

With ECHO_TOOL_FAIL set in its environment it exits at once with status 1; with
ECHO_TOOL_LOG set, every line it has finished handling is appended to that file
(how fault tests count executions across restarts).
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["main"]

HELP = """\
:prompt TEXT   use TEXT as the prompt
:sleep S [TAG] wait S seconds, then answer (with TAG)
:big N         print N bytes of 'x'
:set K V       remember V under K      :get K   print it
:reset         forget everything
:count         prompts answered so far
:pid           this process's id
:crash         exit at once with status 3
:exit          exit normally
:log PATH      append each later line to PATH once handled (counts executions)"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if os.environ.get("ECHO_TOOL_FAIL"):
        return 1  # a tool that cannot start (crash-loop tests)
    if args and args[0] == "--start-delay":
        time.sleep(float(args[1]))
    prompt = "echo> "
    state: dict[str, str] = {}
    count = 0
    log_path: str | None = os.environ.get("ECHO_TOOL_LOG") or None
    out = sys.stdout
    while True:
        out.write(prompt)
        out.flush()
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.rstrip("\n")
        cmd, _, rest = line.partition(" ")
        count += 1
        if cmd == ":prompt":
            prompt = rest
        elif cmd == ":sleep":
            seconds, _, tag = rest.partition(" ")
            time.sleep(float(seconds))
            out.write(f"slept {seconds}{' ' + tag if tag else ''}\n")
        elif cmd == ":big":
            size = int(rest)
            for start in range(0, size, 65536):
                out.write("x" * min(65536, size - start))
            out.write("\n")
        elif cmd == ":set":
            key, _, value = rest.partition(" ")
            state[key] = value
        elif cmd == ":get":
            out.write(state.get(rest, "") + "\n")
        elif cmd == ":reset":
            state.clear()
            count = 0
        elif cmd == ":count":
            out.write(f"{count}\n")
        elif cmd == ":pid":
            out.write(f"{os.getpid()}\n")
        elif cmd == ":crash":
            os._exit(3)
        elif cmd == ":exit":
            return 0
        elif cmd == ":log":
            log_path = rest
        elif cmd == ":help":
            out.write(HELP + "\n")
        elif line:
            out.write(line + "\n")
        if log_path is not None and line and cmd not in (":log", ":prompt"):
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
