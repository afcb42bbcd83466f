"""The built-in ``aider`` profile on the real aider (PyPI aider-chat) and a scripted model.

aider runs from its own virtualenv, ``.aider-venv`` (made by ``scripts/aider-venv``; the
tests are skipped without it), in a pty through :class:`ToolInstance`, exactly as a worker
runs it: the built-in profile with only argv[0] replaced. Its model is
``tests/programs/fake_openai.py``, an OpenAI-compatible server on a free local port that
answers "add a DOC_ID header" requests with the edit, so no network is used: the model's
metadata comes from a file (aider would otherwise download litellm's price list), and
any other attempt to reach the internet fails at once through a proxy that is not there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from toolfleet.models import Usage
from toolfleet.profiles import BUILTIN_PROFILES, Profile
from toolfleet.tool import ToolInstance
from toolfleet.workers.supervisor import Supervisor

from ..helpers import eventually
from ..installed import AIDER
from ..programs import fake_openai
from .procs import descendants, pid_alive

pytestmark = [
    pytest.mark.skipif(
        not AIDER.is_file(),
        reason="the real aider is not installed: run scripts/aider-venv (makes .aider-venv)",
    ),
    pytest.mark.skipif(shutil.which("git") is None, reason="no git (aider works in a git repo)"),
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with three committed python files."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.py").write_text('def a():\n    return "a"\n')
    (root / "b.py").write_text("B = 2\n\n\ndef b():\n    return B\n")
    (root / "c.py").write_text("import os\n\nprint(os.getcwd())\n")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.name", "toolfleet test")
    git("config", "user.email", "test@toolfleet.invalid")
    git("add", ".")
    git("commit", "-q", "-m", "three files")
    return root


def real_aider_profile(port: int, directory: Path, edit_format: str) -> Profile:
    """The built-in aider profile on the venv's aider, talking to the fake server."""
    base = BUILTIN_PROFILES["aider"]
    env = {**base.env, **fake_openai.aider_env(port, directory, edit_format)}
    return base.model_copy(update={"argv": [str(AIDER), *base.argv[1:]], "env": env})


@pytest.fixture
def metadata(tmp_path: Path) -> Path:
    """The directory the model's metadata file is written to."""
    return tmp_path


def closed(inst: ToolInstance) -> None:
    """Close ``inst`` and check that aider and everything it started are gone."""
    pid = inst.pid
    tree = (descendants(pid) | {pid}) if pid is not None else set()
    inst.close()
    eventually(
        lambda: not any(pid_alive(p) for p in tree),
        what=lambda: f"aider gone; still running: {[p for p in tree if pid_alive(p)]}",
    )
    shutil.rmtree(inst.instance_dir, ignore_errors=True)


def header_added(inst: ToolInstance, name: str) -> str:
    """Ask aider to add the DOC_ID header to ``name``; the answer to the request."""
    stem = Path(name).stem
    assert f"Added {name} to the chat" in inst.ask(f"/add {name}").output
    answer = inst.ask(f'Add a "# DOC_ID: {stem}" header line to {name}')
    assert f"Applied edit to {name}" in answer.output, answer.output
    assert f"Removed {name} from the chat" in inst.ask(f"/drop {name}").output
    return answer.output


@pytest.mark.parametrize("edit_format", ["whole", "diff"])
def test_real_aider_adds_headers_to_two_files_in_one_session(
    edit_format: str, server: fake_openai.FakeOpenAI, repo: Path, metadata: Path
) -> None:
    originals = {name: (repo / name).read_text() for name in ("a.py", "b.py", "c.py")}
    inst = ToolInstance(real_aider_profile(server.port, metadata, edit_format), cwd=str(repo))
    started = time.monotonic()
    inst.start()
    try:
        pid = inst.pid
        first = header_added(inst, "a.py")
        assert (repo / "a.py").read_text() == "# DOC_ID: a\n" + originals["a.py"]
        assert "Tokens:" in first and "> " not in first.splitlines()[-1]
        assert inst.alive() and inst.pid == pid

        header_added(inst, "b.py")
        assert (repo / "b.py").read_text() == "# DOC_ID: b\n" + originals["b.py"]
        assert (repo / "c.py").read_text() == originals["c.py"]  # never in the chat
        assert (repo / "a.py").read_text().startswith("# DOC_ID: a\n")  # left as it was

        plain = inst.ask("What did you just do?").output
        assert "Fake reply #3." in plain
        assert (inst.alive(), inst.pid, inst.generation) == (True, pid, 1)
    finally:
        closed(inst)
    edits = [(r["kind"], r.get("format"), r.get("file")) for r in server.requests]
    assert edits == [
        ("edit", edit_format, "a.py"),
        ("edit", edit_format, "b.py"),
        ("text", None, None),
    ]
    assert time.monotonic() - started < 120
    # --no-auto-commits: the edits are left uncommitted in the work tree
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
    assert {line[3:] for line in status.splitlines()} >= {"a.py", "b.py"}


def test_answer_has_no_terminal_debris(
    server: fake_openai.FakeOpenAI, repo: Path, metadata: Path
) -> None:
    inst = ToolInstance(real_aider_profile(server.port, metadata, "whole"), cwd=str(repo))
    inst.start()
    try:
        inst.ask("/add c.py")
        answer = inst.ask('Add a "# DOC_ID: c" header line to c.py').output
        assert "Applied edit to c.py" in answer  # the edit itself works
        assert answer.startswith("I will add the line"), repr(answer[:40])
        assert "\b" not in answer
    finally:
        closed(inst)


def test_usage_is_read_from_aiders_report(
    server: fake_openai.FakeOpenAI, repo: Path, metadata: Path
) -> None:
    """aider prints "Tokens: N sent, M received. Cost: $X message, $Y session." after a
    reply; the aider profile's usage_pattern turns it into PromptResult.usage."""
    profile = real_aider_profile(server.port, metadata, "whole")
    sup = Supervisor(ToolInstance(profile, cwd=str(repo)), "aider1@test", [])
    sup.start()
    try:
        assert sup.run("/add a.py").usage is None  # no model call, no report
        result = sup.run('Add a "# DOC_ID: a" header line to a.py')
        reported = server.requests[-1]["usage"]
    finally:
        sup.stop()
        shutil.rmtree(sup.instance.instance_dir, ignore_errors=True)  # type: ignore[attr-defined]
    line = re.search(
        r"Tokens: (\d+) sent, (\d+) received\. Cost: \$([\d.]+) message", result.output
    )
    assert line is not None, result.output  # aider's own report (its token count)
    usage = result.usage
    assert usage == Usage(sent=int(line[1]), received=int(line[2]), cost=float(line[3]))
    assert usage.sent > 0 and usage.received > 0 and usage.cost > 0
    # aider prices its own count with the model's metadata (what the server was told)
    price = fake_openai.METADATA[fake_openai.MODEL]
    expected = (
        usage.sent * price["input_cost_per_token"] + usage.received * price["output_cost_per_token"]
    )
    assert usage.cost == pytest.approx(expected, rel=0.1)
    assert reported["completion_tokens"] > 0  # the server's stream carried a usage block
    assert sup.health().usage_total == usage
