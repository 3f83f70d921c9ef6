"""What the browser tests do again and again: sign in, make a connect link, go through a
simulated platform's authorization page, look into the service's database, check a page's
accessibility basics, and receive the service's webhooks."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shopkeys.crypto import load_key_ring
from shopkeys.store.database import create_engine, database_url
from shopkeys.store.vault import Vault
from tests.conftest import LiveService

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
DESKTOP = {"width": 1280, "height": 900}
#: A phone, as a merchant opening a connect link from a message would hold it.
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
}
#: Where the tests leave the pages' screenshots for the docs: the repository's docs/screenshots.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

CONNECT_LINK = re.compile(r"/connect\?session=[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Platform:
    name: str
    display_name: str
    #: The store login typed on the simulator's page: each platform's store is its own.
    login: str


ALIEXPRESS = Platform("aliexpress", "AliExpress", "ali-corner")
TIKTOK_SHOP = Platform("tiktok_shop", "TikTok Shop", "tiktok-corner")
SHOPLINE = Platform("shopline", "SHOPLINE", "shopline-corner")
ECWID = Platform("ecwid", "Ecwid", "ecwid-corner")
PLATFORMS = (ALIEXPRESS, TIKTOK_SHOP, SHOPLINE, ECWID)


# -- the operator's and the merchant's steps ------------------------------------------------------


def sign_in(page: Page, live: LiveService) -> None:
    """On the sign-in page: type the admin key and press Sign in."""
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill(live.api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def make_connect_link(page: Page, platform: Platform, end_user_id: str) -> str:
    """On the dashboard: the "Connect a store" form; returns the link the next page shows."""
    form = page.get_by_role("region", name="Connect a store")
    form.get_by_label("Platform").select_option(label=platform.display_name)
    form.get_by_label("End user id").fill(end_user_id)
    form.get_by_role("button", name="Make connect link").click()
    heading = page.get_by_role("heading", name=f"Connect link for {platform.display_name}")
    expect(heading).to_be_visible()
    link = page.locator("#connect-link")
    expect(link).to_have_value(CONNECT_LINK)
    return link.input_value()


def continue_to_platform(page: Page, platform: Platform) -> None:
    """On a connect link's page: on to the platform."""
    name = platform.display_name
    expect(page.get_by_role("heading", name=f"Connect your {name} store")).to_be_visible()
    page.get_by_role("button", name=f"Continue to {name}").click()
    expect(page.get_by_label("Store login")).to_be_visible()


def answer_on_platform(page: Page, login: str, button: str = "Authorize") -> None:
    """On the simulated platform's authorization page: the store login, then `button`."""
    expect(page.get_by_text("Sandbox: a simulator of")).to_be_visible()
    page.get_by_label("Store login").fill(login)
    page.get_by_role("button", name=button, exact=True).click()


def connected_id(page: Page) -> str:
    """On the "Store connected" page: the new connection's id."""
    expect(page.get_by_role("heading", name="Store connected")).to_be_visible()
    facts = page.locator("dl.facts")
    return facts.locator("dt:text-is('Connection') + dd").inner_text().strip()


def connect_link_over_api(page: Page, live: LiveService, provider: str, end_user_id: str) -> Any:
    """`POST /v1/connect-sessions` as an app does it: the session's id, url and expiry."""
    answer = page.request.post(
        f"{live.url}/v1/connect-sessions",
        data={"provider": provider, "end_user_id": end_user_id},
        headers=live.headers,
    )
    assert answer.status == 201, answer.text()
    return answer.json()


# -- the service's database, from a thread of its own ---------------------------------------------


def with_vault(live: LiveService, work: Callable[[Vault], Awaitable[T]]) -> T:
    """`work` on a vault of the test's own over the service's database.

    The service's engine belongs to the server thread's event loop, and Playwright's sync API
    keeps an event loop running in this thread, so the vault is opened on a thread of its own.
    """
    settings = live.settings
    assert settings.database_url is not None and settings.encryption_keys is not None

    async def run() -> T:
        engine = create_engine(
            database_url(settings.database_url.get_secret_value(), settings.data_dir)
        )
        keys = load_key_ring(settings.encryption_keys.get_secret_value(), settings.data_dir)
        try:
            return await work(Vault(engine, keys.ring))
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(run())).result(timeout=30)


def stored_secrets(live: LiveService) -> set[str]:
    """Every token of every connection in the database now."""

    async def read(vault: Vault) -> set[str]:
        ids = [c.id for c in await vault.connections.find(limit=1000)]
        found: set[str] = set()
        for stored in (await vault.connections.tokens_of(ids)).values():
            for token in (stored.access_token, stored.refresh_token, stored.public_token):
                if token:
                    found.add(token)
        return found

    return with_vault(live, read)


def access_token(live: LiveService, connection_id: str) -> str:
    async def read(vault: Vault) -> str:
        stored = await vault.connections.tokens(connection_id)
        assert stored is not None
        return stored.access_token

    return with_vault(live, read)


# -- what every page must have ---------------------------------------------------------------------

_UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea')]
  .filter(el => ![...el.labels].some(label => label.textContent.trim()))
  .map(el => el.outerHTML)"""

_CONTROLS = "main :is(input:not([type=hidden]), select, textarea, button)"
#: On a page without a form: what else the keyboard must reach.
_FOCUSABLE = "main :is(a[href], summary)"


def check_accessibility_basics(page: Page) -> None:
    """Labels for every field, a `main` landmark, a language, and the keyboard reaching the
    first control in `main` (its first link when it has no form) by Tab from the top of the
    page, through the skip link first.

    Call it on a freshly loaded page: Tab starts from the top of the document.
    """
    where = page.url
    assert page.evaluate(_UNLABELLED) == [], f"fields without a <label> on {where}"
    assert page.locator("main").count() == 1, f"no single <main> on {where}"
    assert page.evaluate("document.documentElement.lang"), f"no html[lang] on {where}"
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    controls = page.locator(_CONTROLS)
    target = (controls if controls.count() else page.locator(_FOCUSABLE)).first
    for _ in range(30):
        if target.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    else:
        missed = target.evaluate("el => el.outerHTML")
        raise AssertionError(f"Tab never reached {missed} on {where}")


def fits_the_width(page: Page) -> bool:
    """Whether the page needs no sideways scrolling."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


# -- the app's webhook endpoint --------------------------------------------------------------------


@dataclass
class Receiver:
    """An app's webhook endpoint on a loopback port: every POST's `webhook-id`, answered 200."""

    url: str = ""
    ids: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        await request.body()
        with self._changed:
            self.ids.append(request.headers["webhook-id"])
            self._changed.notify_all()
        return Response(status_code=200)

    def wait_until(self, predicate: Callable[[list[str]], bool], timeout: float = 15) -> None:
        """Until `predicate(ids)` holds; fails after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.ids), timeout):
                raise AssertionError(f"the webhook receiver got {self.ids}, not what was awaited")
