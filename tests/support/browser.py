"""Headless Debian Chromium driven by Playwright, for the tests that walk the Dagster UI.

Why Debian's Chromium: Playwright's own browser download cannot work here; `make system-deps` installs
/usr/bin/chromium. Screenshots go to test-artifacts/ (git-ignored) so a reviewer sees what was asserted.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]  # fmt: skip
ARTIFACTS = REPO_ROOT / "test-artifacts"
UI_TIMEOUT_MS = 60_000


def require_chromium() -> None:
    """In CI a missing browser is a failure (the Makefile's system-deps installs it); locally a skip."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver (make system-deps)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def screenshot(page: Any, name: str) -> Path:
    """Save a screenshot (after dismissing the community dialog, which would cover the page)."""
    skip = page.get_by_role("button", name="Skip")
    if skip.is_visible():
        # A page from tests/e2e/conftest.py dismisses the dialog itself (a locator handler): that handler
        # may click first, and this click then waits for a button that is gone. Either way it must go.
        with contextlib.suppress(PlaywrightTimeoutError):
            skip.click(timeout=5_000)
        skip.wait_for(state="hidden")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


def visible_text(page: Any, text: str | re.Pattern[str]) -> Any:
    """Visible elements whose whole text is `text` (the UI keeps hidden copies for truncation)."""
    return page.get_by_text(text, exact=True).filter(visible=True)  # `exact` is ignored for patterns
