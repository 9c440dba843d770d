"""The demo, run once per session from a clean clone, shared by the e2e modules that need its data.

`make demo` in a fresh `git clone` of this repository, as a new user runs it (fewer days, same path): the
clone installs its own .venv from the lock, then history, the real collector against the live simulator,
Dagster (sensor, productions, aggregates, model), the inference server and the closed loop. test_demo.py
checks what it printed and left; test_stack_ui.py runs `make up` on what it left. Also the browser
(one headless Chromium per module) and a fresh page per test for the modules that walk the Dagster UI.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, UI_TIMEOUT_MS, require_chromium
from tests.support.demo import DEMO_ARGS, DemoRun, clean_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    clone = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = clean_env()
    proc = subprocess.run(
        ["make", "demo", f"DEMO_ARGS={DEMO_ARGS}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    out = proc.stdout + proc.stderr
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "demo-output.txt").write_text(out)
    assert proc.returncode == 0, out[-6000:]
    yield DemoRun(clone, proc.stdout, env)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module. Not per session: Playwright's sync API keeps its event loop
    running in the main thread while it is open, and every later test calling asyncio.run() would fail."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page of a visitor who has dismissed the first-visit 'Join the Dagster community' dialog.

    The UI remembers that dismissal in localStorage (`communityNux`, JSON "1"); it is set before any page
    script runs. Without it the dialog can open together with another one (the Materialize dialog) whose
    overlay then intercepts every click on its Skip button, so a locator handler clicking Skip hung until
    the test failed (seen in full runs). The handler stays as a fallback and dispatches the click to the
    button itself, which no overlay can intercept."""
    context = browser.new_context(viewport={"width": 2560, "height": 1400})
    context.add_init_script("try { window.localStorage.setItem('communityNux', '\"1\"'); } catch (e) {}")
    pg = context.new_page()
    pg.set_default_timeout(UI_TIMEOUT_MS)
    pg.add_locator_handler(pg.get_by_role("button", name="Skip"), lambda skip: skip.dispatch_event("click"))
    try:
        yield pg
    finally:
        context.close()
