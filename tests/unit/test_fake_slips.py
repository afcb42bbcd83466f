"""The fake OpenAI model's slips (broken first edits) and repairs, through ``answer``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ..programs.fake_openai import FILES_PREFIX, FakeOpenAI, serve

SYSTEM = {
    "whole": "Return each file in a *file listing*.",
    "diff": "Use SEARCH/REPLACE blocks.",
    "diff-fenced": "Like this:\n```\nfoo.py\n<<<<<<< SEARCH\n",
}
SYNTAX = "def slip(:  # fake-model slip\n"
ASSERT = "VALUE = -1  # fake-model slip\n"
REPAIR = "The check `pytest -q` failed with:\nE   SyntaxError\nFix {name} so that it passes."


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    server, _ = serve(0)
    yield server
    server.shutdown()
    server.server_close()


def body(request: str, content: str, name: str = "src/m07.py", fmt: str = "whole") -> Any:
    """A chat as aider sends it: system prompt, the file listing, the request."""
    listing = f"{FILES_PREFIX}\n\n{name}\n```\n{content}```\n"
    messages = [
        {"role": "system", "content": SYSTEM[fmt]},
        {"role": "user", "content": listing},
        {"role": "assistant", "content": "Ok."},
        {"role": "user", "content": request},
    ]
    return {"model": "gpt-4o-mini", "messages": messages}


def whole(reply: str, name: str = "src/m07.py") -> str:
    """The new content of a ``whole`` edit."""
    found = re.search(rf"\n{re.escape(name)}\n```\n(.*)```\n$", reply, re.DOTALL)
    assert found is not None, reply
    return found[1]


def applied(reply: str, content: str) -> str:
    """``content`` after a reply's SEARCH/REPLACE block, which must match it."""
    found = re.search(r"<<<<<<< SEARCH\n(.*?)=======\n(.*?)>>>>>>> REPLACE\n", reply, re.DOTALL)
    assert found is not None, reply
    assert found[1] in content
    return content.replace(found[1], found[2], 1)


def doc_id(name: str) -> str:
    return f"Add a DOC_ID header to {name}."


def test_first_edits_slip_syntax_then_assert(server: FakeOpenAI) -> None:
    server.slipping = {"src/m07.py", "src/m08.py"}
    reply, record = server.answer(body(doc_id("src/m07.py"), "VALUE = 7\n"))
    assert whole(reply) == "# DOC_ID: m07\nVALUE = 7\n" + SYNTAX
    assert record["kind"] == "edit" and record["slip"] == "syntax"
    with pytest.raises(SyntaxError):
        compile(whole(reply), "m07.py", "exec")
    name = "src/m08.py"
    reply, record = server.answer(body(doc_id(name), "VALUE = 8", name=name))
    assert whole(reply, name) == "# DOC_ID: m08\nVALUE = 8\n" + ASSERT
    assert record["slip"] == "assert"
    assert server.slipped == ["src/m07.py", "src/m08.py"]


def test_a_file_slips_once(server: FakeOpenAI) -> None:
    server.slipping = {"src/m07.py"}
    server.answer(body(doc_id("src/m07.py"), "VALUE = 7\n"))
    reply, record = server.answer(body(doc_id("src/m07.py"), "VALUE = 7\n"))
    assert whole(reply) == "# DOC_ID: m07\nVALUE = 7\n"
    assert "slip" not in record
    assert server.slipped == ["src/m07.py"]


def test_a_repair_removes_the_slip_and_keeps_the_header(server: FakeOpenAI) -> None:
    broken = "# DOC_ID: m07\nVALUE = 7\n" + SYNTAX
    request = REPAIR.format(name="src/m07.py") + " Keep the DOC_ID header."
    reply, record = server.answer(body(request, broken))
    assert whole(reply) == "# DOC_ID: m07\nVALUE = 7\n"
    assert record["kind"] == "repair" and record["file"] == "src/m07.py"
    assert server.repaired == ["src/m07.py"]
    reply, _ = server.answer(body(REPAIR.format(name="src/m07.py"), "VALUE = 7\n" + ASSERT))
    assert whole(reply) == "# DOC_ID: m07\nVALUE = 7\n"
    reply, record = server.answer(body(REPAIR.format(name="src/m07.py"), "VALUE = 7\n"))
    assert reply == "No changes are needed." and record["kind"] == "repair"
    assert server.repaired == ["src/m07.py", "src/m07.py"]


@pytest.mark.parametrize(
    ("fmt", "edit"),
    [
        ("whole", "src/m07.py\n```\n# DOC_ID: m07\nVALUE = 7\nX = 1\n```\n"),
        (
            "diff",
            "src/m07.py\n```python\n<<<<<<< SEARCH\nVALUE = 7\n=======\n"
            "# DOC_ID: m07\nVALUE = 7\n>>>>>>> REPLACE\n```\n",
        ),
        (
            "diff-fenced",
            "```python\nsrc/m07.py\n<<<<<<< SEARCH\nVALUE = 7\n=======\n"
            "# DOC_ID: m07\nVALUE = 7\n>>>>>>> REPLACE\n```\n",
        ),
    ],
)
def test_files_not_slipping_get_todays_edit(server: FakeOpenAI, fmt: str, edit: str) -> None:
    server.slipping = {"src/m08.py"}
    reply, record = server.answer(body(doc_id("src/m07.py"), "VALUE = 7\nX = 1\n", fmt=fmt))
    assert reply == "I will add the line `# DOC_ID: m07` at the top of `src/m07.py`.\n\n" + edit
    assert record["kind"] == "edit" and "slip" not in record
    assert server.slipped == [] and server.repaired == []


@pytest.mark.parametrize("fmt", ["diff", "diff-fenced"])
def test_diff_slip_and_repair_blocks_apply(server: FakeOpenAI, fmt: str) -> None:
    server.slipping = {"src/m07.py"}
    content = '"""M07."""\n\nVALUE = 7\n'
    reply, record = server.answer(body(doc_id("src/m07.py"), content, fmt=fmt))
    assert record["format"] == fmt and record["slip"] == "syntax"
    broken = applied(reply, content)
    assert broken == "# DOC_ID: m07\n" + content + SYNTAX
    reply, _ = server.answer(body(REPAIR.format(name="src/m07.py"), broken, fmt=fmt))
    assert applied(reply, broken) == "# DOC_ID: m07\n" + content
    reply, _ = server.answer(body(doc_id("src/m07.py"), "", fmt=fmt))  # slipped already
    assert applied(reply, "") == "# DOC_ID: m07\n"
