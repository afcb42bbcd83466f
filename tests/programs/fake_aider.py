#!/usr/bin/env python3
"""A scripted stand-in for aider 0.86 run as ``aider --no-pretty --no-fancy-input --yes-always``.

It imitates what aider 0.86.2 shows in a (dumb) terminal, with no LLM and no network, so
tests can drive the ``aider`` profile. Standard library only. Its terminal behaviour
follows aider's own code (``aider/io.py`` ``get_input``, ``aider/coders/base_coder.py``
``run``/``send``/``keyboard_interrupt``, ``aider/commands.py``) at tag v0.86.2:

- start-up: a delay (``FAKE_AIDER_START_DELAY`` seconds, default 1.0), the announcement
  lines (version, model, ``Git repo: none``, ``Repo-map: disabled``, files added).
- before each input: a blank line (aider's ``rule()`` without ``--pretty``), then its
  input prompt: the chat's files, one a line (``name (read only)`` first), and the prompt
  prefix: the edit format when one is set (``--edit-format`` or ``AIDER_EDIT_FORMAT``;
  real aider shows it when it differs from the model's default), ``multi`` with
  ``--multiline``, then ``> ``. So ``> ``, ``diff> ``, ``whole> ``, ``diff-fenced> ``...
- after reading the input: a blank line (aider's ``print()``).
- multi-line input: a line ``{`` (or ``{TAG``) opens it and ``}`` (``TAG}``) closes it;
  aider shows the prompt prefix again before each line it reads inside.
- commands: ``/add``, ``/drop``, ``/clear``, ``/reset``, ``/ls``, ``/tokens``, ``/help``,
  ``/exit``, ``/quit`` (unique prefixes work, as in aider).
- any other text goes to the "LLM": the reply ``Reply #N to: MESSAGE (files: a.py, b.py)``
  is streamed word by word over ``FAKE_AIDER_REPLY_SECONDS`` (default 0.3) seconds, then
  a blank-terminated ``Tokens: ... sent, ... received.`` line. N counts messages since
  start, ``/clear`` or ``/reset``. The message ``sleep S`` makes the reply take S seconds.
  The first reply after start takes ``FAKE_AIDER_FIRST_REPLY_EXTRA`` (default 0) seconds
  more (real aider loads its LLM library then).
- Ctrl-C (SIGINT) while replying aborts the reply (about 0.1 s) and, like aider's
  ``send()``, counts as a keyboard interrupt: ``^C again to exit`` is printed, and a
  second Ctrl-C within 2 s (while replying or at the prompt) prints
  ``^C KeyboardInterrupt`` and exits.
- ``.aider.chat.history.md`` and ``.aider.input.history`` are appended to in the current
  directory (``--chat-history-file`` / ``--input-history-file`` change them).

Arguments: any ``--flag`` or ``--flag=value`` is accepted; the flags aider gives a value
(``--model M``, ``--read F``...) take the next argument; other words are files to add.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

VERSION = "0.86.2"
DEFAULT_MODEL = "fake/scripted-model"
CONTEXT_WINDOW = 128_000
INTERRUPT_THRESHOLD = 2.0  # seconds, aider's Coder.keyboard_interrupt
COMMANDS = ("add", "clear", "drop", "exit", "help", "ls", "quit", "reset", "tokens")

# aider options that take a value (so the next argument is not a file name)
VALUE_FLAGS = frozenset(
    {
        "--model",
        "--weak-model",
        "--editor-model",
        "--edit-format",
        "--editor-edit-format",
        "--chat-mode",
        "--read",
        "--file",
        "--message",
        "--message-file",
        "--chat-history-file",
        "--input-history-file",
        "--llm-history-file",
        "--map-tokens",
        "--map-refresh",
        "--api-key",
        "--set-env",
        "--openai-api-key",
        "--anthropic-api-key",
        "--openai-api-base",
        "--env-file",
        "--config",
        "--encoding",
        "--line-endings",
        "--model-settings-file",
        "--model-metadata-file",
        "--reasoning-effort",
        "--thinking-tokens",
        "--timeout",
        "--cache-keepalive-pings",
        "--max-chat-history-tokens",
        "--user-input-color",
        "--tool-output-color",
        "--tool-error-color",
        "--tool-warning-color",
        "--assistant-output-color",
        "--code-theme",
        "--completion-menu-color",
        "--aiderignore",
        "--lint-cmd",
        "--test-cmd",
        "--voice-format",
        "--voice-language",
        "--notifications-command",
        "--editor",
    }
)


def format_tokens(count: int) -> str:
    """Like aider's ``format_tokens``: 950, 1.2k, 12k."""
    if count < 1000:
        return f"{count}"
    if count < 10000:
        return f"{count / 1000:.1f}k"
    return f"{round(count / 1000)}k"


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class FakeAider:
    def __init__(self, argv: list[str]) -> None:
        self.root = Path.cwd().resolve()
        self.model = os.environ.get("AIDER_MODEL", DEFAULT_MODEL)
        self.edit_format = os.environ.get("AIDER_EDIT_FORMAT", "")
        self.multiline_mode = False
        self.chat_history = self.root / ".aider.chat.history.md"
        self.input_history = self.root / ".aider.input.history"
        self.files: set[str] = set()  # chat files, relative to root
        self.read_only: set[str] = set()
        self.original_read_only: set[str] = set()
        self.messages = 0  # since start, /clear or /reset
        self.replied = False
        self.last_keyboard_interrupt: float | None = None
        self.reply_seconds = env_float("FAKE_AIDER_REPLY_SECONDS", 0.3)
        self.first_reply_extra = env_float("FAKE_AIDER_FIRST_REPLY_EXTRA", 0.0)
        self.start_files: list[str] = []
        self._parse(argv)

    # ---- arguments -------------------------------------------------------------------
    def _parse(self, argv: list[str]) -> None:
        args = list(argv)
        while args:
            arg = args.pop(0)
            if arg == "--":
                self.start_files += args
                break
            if not arg.startswith("-") or arg == "-":
                self.start_files.append(arg)
                continue
            flag, eq, value = arg.partition("=")
            if not eq and flag in VALUE_FLAGS and args:
                value = args.pop(0)
            if flag == "--version":
                print(f"aider {VERSION}")
                raise SystemExit(0)
            if flag == "--model":
                self.model = value
            elif flag == "--edit-format":
                self.edit_format = value
            elif flag == "--multiline":
                self.multiline_mode = True
            elif flag == "--no-multiline":
                self.multiline_mode = False
            elif flag == "--chat-history-file":
                self.chat_history = self.root / value
            elif flag == "--input-history-file":
                self.input_history = self.root / value
            elif flag == "--file":
                self.start_files.append(value)
            elif flag == "--read":
                name = self._rel(value)
                self.read_only.add(name)
                self.original_read_only.add(name)
            # every other flag is accepted and ignored

    # ---- output ----------------------------------------------------------------------
    @staticmethod
    def out(text: str = "", end: str = "\n") -> None:
        sys.stdout.write(text + end)
        sys.stdout.flush()

    def tool_output(self, text: str = "") -> None:
        """Like ``io.tool_output``: printed, and quoted into the chat history."""
        if text.strip():
            self.append_chat_history(f"> {text.strip()}  \n")
        self.out(text)

    def append_chat_history(self, text: str) -> None:
        try:
            with self.chat_history.open("a", encoding="utf-8") as fh:
                fh.write(text)
        except OSError:
            pass

    def append_input_history(self, text: str) -> None:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
        lines = "".join(f"+{line}\n" for line in text.splitlines() or [""])
        try:
            with self.input_history.open("a", encoding="utf-8") as fh:
                fh.write(f"\n# {stamp}\n{lines}")
        except OSError:
            pass

    # ---- files -----------------------------------------------------------------------
    def _rel(self, name: str) -> str:
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = self.root / path
        path = path.resolve()
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def all_files(self) -> list[str]:
        return sorted(self.files | self.read_only)

    def add_file(self, word: str) -> None:
        name = self._rel(word)
        path = self.root / name
        if Path(name).is_absolute():
            self.out(f"Can not add {name}, which is not within {self.root}")
            return
        if path.is_dir():
            self.out(f"Directory {path} is not in git.")
            return
        if not path.exists():
            # --yes-always answers aider's "Do you want to create it?" with yes, silently
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            except OSError as exc:
                self.out(f"Error creating file {path}: {exc}")
                return
        if name in self.files:
            self.out(f"{name} is already in the chat as an editable file")
            return
        self.read_only.discard(name)
        self.files.add(name)
        self.tool_output(f"Added {name} to the chat")

    # ---- start -----------------------------------------------------------------------
    def start(self) -> None:
        time.sleep(max(0.0, env_float("FAKE_AIDER_START_DELAY", 1.0)))
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self.append_chat_history(f"\n# aider chat started at {stamp}\n\n")
        lines = [
            f"Aider v{VERSION}",
            f"Model: {self.model} with {self.edit_format or 'whole'} edit format",
            "Git repo: none",
            "Repo-map: disabled",
        ]
        for word in self.start_files:
            name = self._rel(word)
            if not Path(name).is_absolute():
                (self.root / name).touch(exist_ok=True)
                self.files.add(name)
        lines += [f"Added {name} to the chat." for name in sorted(self.files)]
        lines += [f"Added {name} to the chat (read-only)." for name in sorted(self.read_only)]
        if self.multiline_mode:
            lines.append("Multiline mode: Enabled. Enter inserts newline, Alt-Enter submits text")
        for line in lines:
            self.tool_output(line)

    # ---- the main loop (aider's Coder.run) --------------------------------------------
    def run(self) -> int:
        self.start()
        try:
            while True:
                try:
                    self.run_one(self.get_input())
                except KeyboardInterrupt:
                    self.keyboard_interrupt()
        except EOFError:
            return 0

    def keyboard_interrupt(self) -> None:
        now = time.time()
        last = self.last_keyboard_interrupt
        if last is not None and now - last < INTERRUPT_THRESHOLD:
            self.out("\n\n^C KeyboardInterrupt")
            raise SystemExit(0)
        self.out("\n\n^C again to exit")
        self.last_keyboard_interrupt = now

    def prompt_prefix(self) -> str:
        prefix = self.edit_format
        if self.multiline_mode:
            prefix += (" " if prefix else "") + "multi"
        return prefix + "> "

    def get_input(self) -> str:
        """aider's ``InputOutput.get_input`` without prompt_toolkit."""
        self.out()  # rule() when not pretty
        show = "".join(f"{name} (read only)\n" for name in sorted(self.read_only))
        show += "".join(f"{name}\n" for name in sorted(self.files - self.read_only))
        prefix = self.prompt_prefix()
        show += prefix
        inp = ""
        multiline_input = False
        multiline_tag: str | None = None
        while True:
            if multiline_input:
                show = prefix
            line = input(show)  # on a tty CPython writes the prompt to stderr
            stripped = line.strip("\r\n")
            if stripped and not multiline_input:
                if stripped == "{":
                    multiline_input, multiline_tag = True, None
                    continue
                if stripped[0] == "{":
                    tag = "".join(c for c in stripped[1:] if c.isalnum())
                    if stripped == "{" + tag:
                        multiline_input, multiline_tag = True, tag
                        continue
                inp = line
                break
            if multiline_input and line.strip():
                if multiline_tag:
                    if stripped == f"{multiline_tag}}}":
                        break
                    inp += line + "\n"
                elif stripped == "}":
                    break
                else:
                    inp += line + "\n"
            elif multiline_input:
                inp += line + "\n"
            else:
                inp = line
                break
        self.out()
        hist = "  \n#### ".join(inp.splitlines() or ["<blank>"])
        self.append_chat_history(f"\n#### {hist}  \n")
        if inp:
            self.append_input_history(inp)
        return inp

    def run_one(self, inp: str) -> None:
        if not inp:
            return
        if inp[0] in "/!":
            self.command(inp)
            return
        self.send_message(inp)

    # ---- the "LLM" ---------------------------------------------------------------------
    def send_message(self, message: str) -> None:
        self.messages += 1
        text = message.strip()
        files = ", ".join(self.all_files()) or "none"
        reply = f"Reply #{self.messages} to: {text} (files: {files})"
        seconds = self.reply_seconds
        match = re.fullmatch(r"sleep\s+(\d+(?:\.\d*)?)", text)
        if match:
            seconds = float(match.group(1))
        # the first reply waits longer for its first word (aider loads litellm then)
        extra = 0.0 if self.replied else self.first_reply_extra
        self.replied = True
        words = reply.split(" ")
        pause = seconds / len(words)
        sent = 1000 + 150 * len(self.all_files()) + 40 * self.messages + len(text)
        streamed = ""
        try:
            try:
                for i, word in enumerate(words):
                    time.sleep(pause + (extra if i == 0 else 0.0))
                    chunk = word if i == 0 else " " + word
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
                    streamed += chunk
            except KeyboardInterrupt:
                # aider's send(): the interrupt counts (a second one within 2 s exits)
                time.sleep(0.1)  # closing the LLM's stream
                self.keyboard_interrupt()
                raise
        except KeyboardInterrupt:
            # aider's send_message(): the reply ends here, back to the prompt
            self.out()
            if streamed:
                self.append_chat_history(f"\n{streamed.strip()}\n\n")
            return
        self.append_chat_history(f"\n{reply}\n\n")
        self.out()
        self.tool_output(
            f"Tokens: {format_tokens(sent)} sent, {format_tokens(len(words))} received."
        )

    # ---- commands (aider's Commands.run) ------------------------------------------------
    def command(self, inp: str) -> None:
        if inp.startswith("!"):
            self.out("Error: Command run not found.")
            return
        words = inp.strip().split()
        if not words:
            return
        first = words[0]
        rest = inp.strip()[len(first) :].strip()
        matching = [f"/{name}" for name in COMMANDS if f"/{name}".startswith(first)]
        if first in matching:
            name = first[1:]
        elif len(matching) == 1:
            name = matching[0][1:]
        elif matching:
            self.out(f"Ambiguous command: {', '.join(matching)}")
            return
        else:
            self.out(f"Invalid command: {first}")
            return
        getattr(self, f"cmd_{name}")(rest)

    def cmd_add(self, args: str) -> None:
        try:
            words = shlex.split(args)
        except ValueError:
            words = args.split()
        for word in sorted(set(words)):
            self.add_file(word)

    def cmd_drop(self, args: str) -> None:
        if not args.strip():
            if self.original_read_only:
                self.tool_output(
                    "Dropping all files from the chat session except originally read-only files."
                )
            else:
                self.tool_output("Dropping all files from the chat session.")
            self.files.clear()
            self.read_only &= self.original_read_only
            return
        try:
            words = shlex.split(args)
        except ValueError:
            words = args.split()
        for word in words:
            for name in sorted(n for n in self.read_only if word in n):
                self.read_only.discard(name)
                self.tool_output(f"Removed read-only file {self.root / name} from the chat")
            for name in sorted(n for n in self.files if word in n):
                self.files.discard(name)
                self.tool_output(f"Removed {name} from the chat")

    def cmd_clear(self, args: str) -> None:
        self.messages = 0
        self.tool_output("All chat history cleared.")

    def cmd_reset(self, args: str) -> None:
        self.files.clear()
        self.read_only &= self.original_read_only
        self.messages = 0
        self.tool_output("All files dropped and chat history cleared.")

    def cmd_ls(self, args: str) -> None:
        chat = sorted(self.files - self.read_only)
        read_only = sorted(self.read_only)
        if not chat and not read_only:
            self.tool_output("\nNo files in chat, git repo, or read-only list.")
            return
        if read_only:
            self.tool_output("\nRead-only files:\n")
            for name in read_only:
                self.tool_output(f"  {name}")
        if chat:
            self.tool_output("\nFiles in chat:\n")
            for name in chat:
                self.tool_output(f"  {name}")

    def cmd_tokens(self, args: str) -> None:
        rows = [(1000, "system messages", "")]
        if self.messages:
            rows.append((40 * self.messages, "chat history", "use /clear to clear"))
        rows += [(150, name, "/drop to remove") for name in sorted(self.files - self.read_only)]
        rows += [(150, f"{name} (read-only)", "/drop to remove") for name in sorted(self.read_only)]
        self.tool_output(f"Approximate context window usage for {self.model}, in tokens:")
        self.tool_output()
        col = max(len(msg) for _, msg, _ in rows)
        for tokens, msg, tip in rows:
            self.tool_output(f"${0:7.4f} {tokens:>8,} {msg.ljust(col)} {tip}".rstrip())
        total = sum(tokens for tokens, _, _ in rows)
        self.tool_output("=" * 18)
        self.tool_output(f"${0:7.4f} {total:>8,} tokens total")
        pad = " " * 9
        self.tool_output(f"{pad}{CONTEXT_WINDOW - total:>8,} tokens remaining in context window")
        self.tool_output(f"{pad}{CONTEXT_WINDOW:>8,} tokens max context window size")

    def cmd_help(self, args: str) -> None:
        for name in COMMANDS:
            self.tool_output(f"/{name}")

    def cmd_exit(self, args: str) -> None:
        raise SystemExit(0)

    def cmd_quit(self, args: str) -> None:
        self.cmd_exit(args)


def main(argv: list[str] | None = None) -> int:
    return FakeAider(sys.argv[1:] if argv is None else argv).run()


if __name__ == "__main__":
    raise SystemExit(main())
