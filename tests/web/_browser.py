"""A real headless Chromium driven by Playwright (the system's /usr/bin/chromium; never
``playwright install``). Tests skip, saying why, where there is no browser."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("BEAMPOD_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_or_skip() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; see docs/web.md)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> None:
    """Saved only when BEAMPOD_WEB_SCREENSHOTS names a directory (docs/screenshots)."""
    folder = os.environ.get("BEAMPOD_WEB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def wait_js(page: Any, expression: str, timeout_s: float = 120.0) -> Any:
    """Poll a JavaScript expression until it is truthy. (Playwright's wait_for_function
    evaluates strings inside the page, which the console's Content-Security-Policy
    forbids, rightly; ``evaluate`` goes through the DevTools protocol instead.)

    Right after a click that navigates, the new document may not have parsed the
    element yet, or the old one is being torn down: an evaluation error then means
    "not yet", and the last one is reported if the deadline passes."""
    import time

    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout_s
    last_error = ""
    while True:
        try:
            value = page.evaluate(f"() => ({expression})")
        except PlaywrightError as exc:
            value, last_error = None, str(exc).splitlines()[0]
        if value:
            return value
        if time.monotonic() > deadline:
            seen = page.evaluate("() => document.body ? document.body.innerText.slice(0, 300) : ''")
            raise AssertionError(
                f"timed out after {timeout_s:.0f}s waiting for {expression} on {page.url}"
                f"{'; last error: ' + last_error if last_error else ''}; the page shows: {seen!r}"
            )
        page.wait_for_timeout(100)
