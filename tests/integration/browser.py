"""A real browser for the tests: Playwright driving Debian's Chromium (no download)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

#: as root, and with this machine's closed network, Chromium needs these
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's Chromium (or $TOOLFLEET_CHROMIUM)."""
    return os.environ.get("TOOLFLEET_CHROMIUM") or shutil.which("chromium")


@contextmanager
def browser_page(**context: Any) -> Iterator[Any]:
    """A fresh page in headless Chromium (``context``: Playwright's options of a new
    page, e.g. ``http_credentials``); skips with the reason when there is none."""
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (./run test installs it)")
    if path is None:
        pytest.skip("no chromium on PATH (./run test installs Debian's as root)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900}, **context)
        finally:
            browser.close()
