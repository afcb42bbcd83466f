"""Prompt validation shared by producer and worker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolfleet.errors import PromptRejected
from toolfleet.validation import validate_prompt

CONTROL = [chr(c) for c in range(32) if chr(c) not in "\t\n"] + ["\x7f", "\x9b"]


def test_plain_and_multiline_text_passes_and_crlf_is_normalised():
    assert validate_prompt("a\r\nb\tc") == "a\nb\tc"


@pytest.mark.parametrize("char", CONTROL)
def test_every_control_byte_is_refused(char):
    with pytest.raises(PromptRejected):
        validate_prompt(f"ok{char}ok")


def test_control_bytes_allowed_when_the_profile_says_so():
    assert validate_prompt("a\x1b[Ab", allow_control=True) == "a\x1b[Ab"


def test_nul_is_refused_even_when_control_is_allowed():
    with pytest.raises(PromptRejected, match="NUL"):
        validate_prompt("a\x00", allow_control=True)


def test_size_limit_counts_utf8_bytes():
    validate_prompt("é" * 10, max_bytes=20)
    with pytest.raises(PromptRejected, match="21 bytes"):
        validate_prompt("é" * 10 + "x", max_bytes=20)


@pytest.mark.parametrize("bad", [b"bytes", None, 3, "\ud800"])
def test_non_text_and_lone_surrogates_are_refused(bad):
    with pytest.raises(PromptRejected):
        validate_prompt(bad)


@given(st.text())
def test_validation_either_refuses_or_returns_clean_text(text):
    try:
        out = validate_prompt(text)
    except PromptRejected:
        return
    assert not any(c in out for c in [*CONTROL, "\x00", "\r"])
