"""Debian's chromium driven by Playwright, for the report's browser tests and ``make screenshots``.

Playwright's own browser download is never used (it does not work here, and a test should run
the browser the system installs): the executable is the system's, started headless with
everything that would reach the network on its own turned off, in a fresh profile.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from tests.helpers import missing_package

__all__ = ["ARGS", "SCREENSHOTS", "chromium", "find_chromium", "require_chromium"]

ROOT = Path(__file__).resolve().parent.parent
# Kept for people to look at after a run (git-ignored); each test also saves its own under tmp_path.
SCREENSHOTS = ROOT / "test-output" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace for chromium's sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium(search: str | None = None, fallback: Path = Path("/usr/bin/chromium")) -> str | None:
    """The system's chromium (Debian's package) on ``search`` (default: PATH) or at ``fallback``, or None."""
    found = shutil.which("chromium", path=search) or shutil.which("chromium-browser", path=search)
    if found is None and fallback.exists():
        found = str(fallback)
    return found


def require_chromium(executable: str | None) -> str:
    """``executable``, else fail (CI, root: `make setup` installs it) or skip (a developer's machine)."""
    if executable is not None:
        return executable
    missing_package("make setup", "Debian's chromium is not installed")


@contextmanager
def chromium(executable: str) -> Iterator[Browser]:
    """A headless chromium from ``executable`` until the block ends (each context gets a fresh profile)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
