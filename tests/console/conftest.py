"""The web console in a real browser: Debian's Chromium (installed by this setup when missing)
driven by Playwright with ``executable_path``, against a real ``sluice serve`` on 127.0.0.1.

Screenshots go to ``test-artifacts/console/`` (git-ignored); every page a test visits is checked
for console errors and uncaught exceptions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail
from tests.e2e.conftest import Sluice, sluice  # noqa: F401  (the real-server fixture, shared)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
# As the machine's notes advise: without the background-networking flags Chromium keeps
# trying to reach Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _install_chromium() -> str | None:
    """Debian's chromium, installed with apt when missing (as root); None when that is impossible."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        [apt, "install", "-y", "--no-install-recommends", "chromium"], env=env, capture_output=True, timeout=900
    )
    if done.returncode != 0:  # the package lists may be stale: update once and try again
        subprocess.run([apt, "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(
            [apt, "install", "-y", "--no-install-recommends", "chromium"], env=env, capture_output=True, timeout=900
        )
    return CHROMIUM if done.returncode == 0 and os.path.exists(CHROMIUM) else None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = _install_chromium()
    if path is None:
        skip_or_fail("Debian's chromium is not installed and could not be installed (apt-get as root)")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while it is
    open, which the asyncio tests of other modules must not find."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Page:
    """A browser tab that records console errors and uncaught exceptions, and takes screenshots."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on(
            "console",
            lambda msg: self.errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        return target

    def forgive(self, status: int) -> None:
        """A page this test expected to be refused (e.g. a form re-rendered with 422): Chromium logs
        its status as a console error; drop exactly those lines."""
        mark = f"status of {status} "
        self.errors = [
            e for e in self.errors if not (e.startswith("console.error: Failed to load resource") and mark in e)
        ]

    def assert_no_errors(self) -> None:
        assert self.errors == [], "\n".join(self.errors)


@pytest.fixture
def page(browser: Any, sluice: Sluice) -> Iterator[Page]:  # noqa: F811  (the fixture, by name)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = Page(context.new_page(), sluice.url)
    try:
        yield tab
    finally:
        context.close()
