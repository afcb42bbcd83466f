"""Usage reports: aider's format, sums, and the profile field's validation."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from toolfleet.models import Usage
from toolfleet.profiles import AIDER_USAGE, BUILTIN_PROFILES, Profile
from toolfleet.tool.usage import parse_usage

AIDER = re.compile(AIDER_USAGE)


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        # aider 0.86 (base_coder.py): a priced model, thousands as 'k'
        (
            "Tokens: 2.5k sent, 120 received. Cost: $0.0012 message, $0.0034 session.",
            Usage(sent=2500, received=120, cost=0.0012),
        ),
        # cache figures between sent and received; 10k and more rounded
        (
            "Tokens: 12k sent, 1.2k cache write, 3.4k cache hit, 980 received.\n"
            "Cost: $0.05 message, $0.12 session.",
            Usage(sent=12000, received=980, cost=0.05),
        ),
        # no price for the model: no Cost part
        ("Tokens: 640 sent, 35 received.", Usage(sent=640, received=35, cost=0.0)),
    ],
)
def test_aider_usage_lines(line: str, usage: Usage) -> None:
    assert parse_usage(AIDER, f"Applied edit to a.py\n{line}\n") == usage


def test_several_reports_in_one_answer_are_summed_and_none_is_none() -> None:
    text = "Tokens: 1k sent, 10 received.\nok\nTokens: 2k sent, 20 received.\n"
    assert parse_usage(AIDER, text) == Usage(sent=3000, received=30)
    assert parse_usage(AIDER, "no report here") is None
    assert parse_usage(None, text) is None


def test_the_aider_profile_reads_its_usage_line() -> None:
    assert BUILTIN_PROFILES["aider"].usage_pattern == AIDER_USAGE


def test_a_usage_pattern_must_compile_and_name_known_groups() -> None:
    base = BUILTIN_PROFILES["echo"].model_dump()
    with pytest.raises(ValidationError, match="no regular expression"):
        Profile(**{**base, "usage_pattern": "Tokens: (?P<sent>"})
    with pytest.raises(ValidationError, match="must name groups among sent, received, cost"):
        Profile(**{**base, "usage_pattern": r"spent (?P<money>\d+)"})
    ok = Profile(**{**base, "usage_pattern": r"spent \$(?P<cost>[\d.]+)"})
    assert parse_usage(re.compile(ok.usage_pattern or ""), "spent $1.5") == Usage(cost=1.5)


def test_usage_sums() -> None:
    assert Usage.total([None, Usage(sent=1, cost=0.1), Usage(received=2, cost=0.2)]) == Usage(
        sent=1, received=2, cost=0.3
    )
    assert Usage.total([None, None]) is None


def test_token_prices_cost_what_a_tool_did_not_price() -> None:
    from toolfleet.tool.usage import priced

    tokens = Usage(sent=2_000_000, received=500_000)
    assert priced(tokens, (1.25, 10.0)) == Usage(sent=2_000_000, received=500_000, cost=7.5)
    reported = Usage(sent=10, received=10, cost=0.02)  # the tool's own figure wins
    assert priced(reported, (1.25, 10.0)) is reported
    assert priced(tokens, None) is tokens and priced(None, (1.0, 1.0)) is None
    with pytest.raises(ValueError, match="0 or more"):
        BUILTIN_PROFILES["codex"].model_validate(
            {**BUILTIN_PROFILES["codex"].model_dump(), "price_per_million": [-1, 2]}
        )
