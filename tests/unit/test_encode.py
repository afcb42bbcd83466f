"""Encoding prompts for each kind of tool, and cleaning their output."""

from __future__ import annotations

import ast

import pytest

from toolfleet.errors import IncompleteInput
from toolfleet.tool.encode import encode
from toolfleet.tool.output import clean_output


def test_python_prompt_is_one_call_with_a_literal():
    typed = encode("python", "x = 1\nprint(x)", "t")
    assert typed.prompts == 1
    call = ast.parse(typed.data).body[0].value
    assert call.func.id == "_tf_exec"
    assert call.args[0].value == "x = 1\nprint(x)"


def test_long_python_prompt_is_typed_in_bounded_lines():
    text = "s = '" + "a" * 10000 + "'"
    typed = encode("python", text, "t")
    lines = typed.data.splitlines()
    assert typed.prompts == len(lines) > 3
    assert max(len(line) for line in lines) < 2200
    ns: dict[str, object] = {}
    ran: list[str] = []
    ns["_tf_exec"] = ran.append
    exec(typed.data, ns)
    assert ran == [text]


def test_bash_prompt_is_an_eval_of_a_quoted_heredoc():
    typed = encode("bash", "echo '$HOME'\necho two", "abc")
    assert typed.data.startswith("IFS= read -r -d '' _tf_prompt <<'TF_END_abc'\n")
    assert typed.data.endswith("\necho '$HOME'\necho two\nTF_END_abc\neval \"$_tf_prompt\"\n")


def test_sqlite_refuses_incomplete_sql_before_typing():
    assert encode("sqlite", ".tables\nselect 1;", "t").prompts == 2
    with pytest.raises(IncompleteInput):
        encode("sqlite", "select 'unclosed;", "t")


def test_node_prompt_is_json_quoted():
    assert encode("node", 'a = "x"\n', "t").data == '_tf("a = \\"x\\"\\n")\n'


def test_clean_output_removes_crs_escapes_and_bad_bytes():
    raw = b"\x1b[31mred\x1b[0m\r\nline\r\r\n\xff\xfe ok\r\n\r\n"
    assert clean_output(raw) == "red\nline\n\ufffd\ufffd ok"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        # a spinner probe drawn and backed over, then the reply typed over it
        (b"\xe2\x96\x91\xe2\x96\x88\x08\x08  \x08\x08I will add it.\r\nok", "I will add it.\nok"),
        # frames redrawn with CR, cleared with spaces, then the text
        (b"Updating repo map: 10%\rUpdating repo map: 90%\r" + b" " * 30 + b"\rDone\n", "Done"),
        # CR then erase-to-end: the shorter text leaves nothing of the longer one
        (b"a long status line\r\x1b[Kshort\n", "short"),
        (b"a long status line\rshort", "shortg status line"),  # what a terminal shows
        (b"abc\x08\x08\x08\x08\x08X", "Xbc"),  # backspace stops at the margin
        (b"keep  trailing  \nspaces  ", "keep  trailing  \nspaces  "),  # untouched lines
    ],
)
def test_clean_output_renders_lines_redrawn_in_place(raw: bytes, shown: str) -> None:
    assert clean_output(raw) == shown


def test_aider_single_line_raw_multiline_wrapped_or_kept():
    assert encode("aider", "/add f.py", "t").data == "/add f.py\n"
    wrapped = encode("aider", "line one\nline two", "abc")
    assert wrapped.data == "{tfabc\nline one\nline two\ntfabc}\n"
    assert wrapped.prompts == 4  # aider shows a prompt before each line of the block
    own = "{\nalready\n}"
    assert encode("aider", own, "t").data == own + "\n"
