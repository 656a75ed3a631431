"""A headless browser for the upload page's tests: Debian's chromium driven by Playwright.

Playwright never downloads a browser here (`playwright install` is not used): it drives the
system's chromium. Without it the tests fail with the command that installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
INSTALL_HINT = "apt-get update && apt-get install -y chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        if not found:
            pytest.fail(
                f"Chromium is not installed ({CHROMIUM} not found). The upload page's browser "
                f"tests drive Debian's chromium; install it with:  {INSTALL_HINT}  "
                "(or set CHROMIUM_PATH to a Chromium binary).",
                pytrace=False,
            )
        return found
    return CHROMIUM


@contextlib.contextmanager
def headless_chromium(executable: str) -> Iterator:
    """A Playwright browser on the system's chromium.

    Playwright's sync API keeps an asyncio loop marked as running in this thread while it is
    started, and Django refuses ORM calls from such a thread: touch the database only before
    entering this block or after leaving it (the live server's own thread is unaffected).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
