"""The status table fits the terminal without cutting what matters; piped output is plain."""

from __future__ import annotations

import io
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.table import Table

import toolfleet.cli.commands as cli_module
from toolfleet.cli import cli
from toolfleet.cli.render import ESSENTIAL_COLUMNS, OPTIONAL_COLUMNS, status_plain, status_table
from toolfleet.models import InstanceHealth

NOW = 1_700_000_000.0
SESSION = "5f0c9e2a7d1b4c1e"  # what sessions.open_session makes: uuid4().hex[:16]
LONG_ERROR = (
    "ToolCrashed: python12@build-host-01 lost its tool (pid 48213, exit status 137, "
    "killed by the kernel OOM killer) while answering prompt "
    "0c8e5a1f-3b7d-4e2a-9f6c-1d2e3f4a5b6c; restarted as generation 4"
)
ALL_HEADERS = (
    "worker",
    "profile",
    "state",
    "session",
    "prompt",
    "pid",
    "gen",
    "served",
    "last ms",
    "p95 ms",
    "rss",
    "beat",
    "last error",
)


def record(worker: str, state: str = "ready", **fields: Any) -> InstanceHealth:
    values: dict[str, Any] = {
        "worker": worker,
        "profile": "python",
        "state": state,
        "pid": 48213,
        "worker_pid": 48200,
        "generation": 3,
        "prompts_served": 1042,
        "last_latency_ms": 12.4,
        "p95_latency_ms": 87.9,
        "rss_bytes": 182 * 2**20,
        "started_at": NOW - 3600,
        "updated_at": NOW - 0.8,
    }
    values.update(fields, version="0.1.0")
    return InstanceHealth(**values)


@pytest.fixture
def fleet() -> list[InstanceHealth]:
    """Realistic names, a restarting instance, and a session with a running prompt."""
    return [
        record("python12@build-host-01", "restarting", generation=4, last_error=LONG_ERROR),
        record("python13@build-host-01", "busy", session=SESSION, busy_since=NOW - 3.24),
        record("bash1@build-host-01", profile="bash", rss_bytes=None),
    ]


def render(table: Table, width: int) -> str:
    """What a terminal of ``width`` columns shows (lines not cropped, so overflow shows)."""
    buffer = io.StringIO()
    Console(width=width, file=buffer).print(table, crop=False)
    return buffer.getvalue()


def header_line(text: str) -> str:
    return next(line for line in text.splitlines() if "worker" in line)


def test_80_columns_keep_worker_state_session_and_prompt_whole(fleet):
    out = render(status_table(fleet, NOW, width=80), 80)
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for r in fleet:
        assert r.worker in out
        assert r.state in out
    assert SESSION in out
    assert "3.2s" in out  # the running prompt's age
    for name in ESSENTIAL_COLUMNS:
        assert name in header_line(out)


def test_session_column_is_there_before_any_session_opens(fleet):
    idle = [r.model_copy(update={"session": None, "busy_since": None}) for r in fleet]
    out = render(status_table(idle, NOW, width=80), 80)
    headers = header_line(out)
    assert "session" in headers
    assert "prompt" in headers


def test_gen_and_rss_stay_at_120_columns_with_a_session_open(fleet):
    out = render(status_table(fleet, NOW, width=120), 120)
    headers = header_line(out)
    assert "gen" in headers
    assert "rss" in headers
    assert "182M" in out
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 120


def test_columns_are_whole_or_left_out(fleet):
    for width in (70, 80, 90, 100, 120, 160, 400):
        out = render(status_table(fleet, NOW, width=width), width)
        assert "…" not in out, width
        assert max(len(line) for line in out.splitlines()) <= width, width
        headers = header_line(out)
        shown = [h for h in OPTIONAL_COLUMNS if f" {h} " in headers]
        # a prefix of the priority order: nothing skipped, nothing squeezed
        assert shown == list(OPTIONAL_COLUMNS[: len(shown)]), width
        if "last error" in shown:
            assert LONG_ERROR in out
        else:
            assert "not shown:" in out


def test_essentials_are_never_cut_even_when_they_alone_do_not_fit(fleet):
    out = render(status_table(fleet, NOW, width=30), 30)
    assert "…" not in out
    for r in fleet:
        assert r.worker in out
        assert r.state in out
    assert SESSION in out


def test_wide_shows_every_column(fleet):
    out = render(status_table(fleet, NOW, width=80, wide=True), 80)
    headers = header_line(out)
    for name in ALL_HEADERS:
        assert f" {name} " in headers, name
    assert "…" not in out
    assert "not shown" not in out
    for r in fleet:
        assert r.worker in out


def test_plain_has_every_column_and_the_long_error_whole(fleet):
    text = status_plain(fleet, NOW)
    lines = text.splitlines()
    assert len(lines) == 1 + len(fleet)
    for name in ALL_HEADERS:
        assert name in lines[0]
    assert LONG_ERROR in lines[1]
    assert SESSION in lines[2]
    assert "3.2s" in lines[2]
    assert "182M" in lines[1]
    assert "…" not in text
    assert not any(ch in text for ch in "│┃━─\x1b[")
    # aligned: every value of a column starts where its header does
    start = lines[0].index("state")
    assert [line[start:].split()[0] for line in lines[1:]] == ["restarting", "busy", "ready"]


def test_plain_keeps_a_multiline_error_on_its_row():
    text = status_plain([record("python1@h", last_error="boom\nTraceback (most recent call)")])
    assert text.splitlines()[1].endswith("boom\\nTraceback (most recent call)")


class FakeFleet:
    """Enough of :class:`toolfleet.client.fleet.Fleet` for the status command."""

    def __init__(self, records: list[InstanceHealth]) -> None:
        self.records = records

    def __enter__(self) -> FakeFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def status(self, profile: str | None = None) -> list[InstanceHealth]:
        return [r for r in self.records if profile is None or r.profile == profile]

    def gateways(self) -> dict[str, dict[str, float]]:
        return {}

    def persistence(self) -> str:
        return "persistent (append-only file, fsync everysec)"


def use_fleet(monkeypatch: pytest.MonkeyPatch, records: list[InstanceHealth]) -> None:
    class Fleet:
        @staticmethod
        def from_env() -> FakeFleet:
            return FakeFleet(records)

    monkeypatch.setattr(cli_module, "Fleet", Fleet)


def test_status_piped_prints_plain_complete_output(monkeypatch, fleet):
    use_fleet(monkeypatch, fleet)
    monkeypatch.setattr(cli_module, "console", Console(force_terminal=False, width=80))
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in ALL_HEADERS:
        assert name in lines[0]
    assert LONG_ERROR in result.output
    for r in fleet:
        assert r.worker in result.output
    assert "…" not in result.output
    assert not any(ch in result.output for ch in "│┃━\x1b")


def test_status_on_an_80_column_terminal_fits(monkeypatch, fleet):
    use_fleet(monkeypatch, fleet)
    terminal = Console(force_terminal=True, color_system=None, width=80)
    monkeypatch.setattr(cli_module, "console", terminal)
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    for r in fleet:
        assert r.worker in result.output
    assert SESSION in result.output
    assert "Redis: persistent (append-only file, fsync everysec)" in result.output
    wide = CliRunner().invoke(cli, ["status", "--wide"])
    assert wide.exit_code == 0, wide.output
    for name in ALL_HEADERS:
        assert f" {name} " in header_line(wide.output), name


def test_status_without_instances_says_so(monkeypatch):
    use_fleet(monkeypatch, [])
    monkeypatch.setattr(cli_module, "console", Console(force_terminal=False))
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 0, result.output
    assert "no instances are reporting" in result.output


def test_gateway_lines_fit_80_columns_and_say_when_the_quota_is_gone() -> None:
    from toolfleet.cli.render import gateway_lines
    from toolfleet.gateway.stats import COUNTERS

    figures = dict.fromkeys(COUNTERS, 0.0)
    figures.update(
        requests=1234, waiting=12, inflight=6, ceiling=3.5, throttled=17, retries=18,
        sent=2_345_678, received=45_678, cost=12.3456, quota_exhausted=1,
    )  # fmt: skip
    head, tail = gateway_lines({"openai-main": figures})
    assert head == "gateway openai-main: 1234 calls, 12 waiting, 6 in flight (ceiling 3.5)"
    assert tail == (
        "  17 429s hidden, 18 retries, tokens 2.3M/45.7k, cost 12.3456, QUOTA EXHAUSTED"
    )
    assert max(len(head), len(tail)) <= 80
