"""Browser tests: Debian's Chromium driven by Playwright (no downloaded browsers), skipped with a reason when
Chromium or Playwright is missing (`.ci/run` installs both).

Playwright is started per test, after the database and live-server fixtures and stopped before them: its sync
API runs an event loop in the test's thread, and a session-long loop would make Django refuse ORM calls in
every later test of the run.
"""

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("TELEDER_CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture
def chromium(live_server):
    """A headless Chromium for one test. Request it last so that it is set up after the other fixtures."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
    )
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    # While Playwright's loop runs, the test's own (synchronous) ORM calls are still safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """Where the browser test leaves its screenshots (TELEDER_E2E_SCREENSHOTS to keep them)."""
    folder = Path(os.environ.get("TELEDER_E2E_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
