"""Fixtures of the browser tests: Debian's Chromium driven by Playwright (never a downloaded
browser), the service served on a loopback port, and a fresh browser context per test.

Playwright's sync API keeps its event loop marked as running in the main thread while it is
started, and pytest-asyncio cannot run an async test under it. So the one Chromium lives for
this package only (`scope="package"`): the browser tests run one after the other, and Playwright
is stopped before the rest of the suite's async tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.helpers import CHROMIUM, DESKTOP, Receiver
from tests.conftest import LiveService, serve_service
from tests.live import serve

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for every browser test."""
    if not CHROMIUM.exists():
        message = f"no Chromium at {CHROMIUM} (Debian's package `chromium`; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


def _sqlite(tmp: Path) -> str:
    # SQLite only: the pages run the same queries on PostgreSQL, which the service tests cover.
    return f"sqlite:///{tmp / 'shopkeys.db'}"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The service with its sandbox, one for the test module."""
    tmp = tmp_path_factory.mktemp("browser")
    with serve_service(_sqlite(tmp), tmp / "data") as service:
        yield service


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The app's webhook endpoint: records every event POSTed to it and answers 200."""
    hooks = Receiver()
    with serve(hooks.app) as url:
        hooks.url = f"{url}/hook"
        yield hooks


@pytest.fixture(scope="module")
def live_with_webhook(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[LiveService]:
    """The service with its sandbox, sending its events to `receiver`."""
    tmp = tmp_path_factory.mktemp("browser")
    with serve_service(_sqlite(tmp), tmp / "data", webhook_url=receiver.url) as service:
        yield service


@pytest.fixture
def context(browser: Browser, live: LiveService) -> Iterator[BrowserContext]:
    """A browser of its own (cookies and all) at a desktop size, on the module's service."""
    made = browser.new_context(viewport=DESKTOP, base_url=live.url)
    # Fail in seconds, not Playwright's 30: every page here answers from loopback.
    made.set_default_timeout(10_000)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
