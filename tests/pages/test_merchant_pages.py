"""The merchant's pages: the connect link's page, and each way a connection can end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import unescape

import httpx2
import pytest
from sqlalchemy import update

from shopkeys.platform import Platform
from shopkeys.providers import get
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.store.tables import AuthSessionRow
from tests.pages.operator import hidden_fields
from tests.service.test_connect_flow import FAILED_TITLE, Driver

NOTHING_DONE = {
    "aliexpress": "APIs this app's category allows",
    "tiktok_shop": "approved for on TikTok Shop Partner Center",
    "shopline": "See and manage your products",
    "ecwid": "See your store's name and settings",
}


@pytest.mark.parametrize("provider", Platform)
async def test_the_link_shows_where_the_merchant_goes_before_anything_starts(
    provider: str, driver: Driver
) -> None:
    session = await driver.start(provider)
    page = await driver.http.get(session["url"])
    name = get(provider).display_name
    assert page.status_code == 200
    assert f"Connect your {name} store" in page.text
    assert f"Continue to {name}</button>" in page.text
    assert NOTHING_DONE[provider] in unescape(page.text)
    assert page.headers["cache-control"] == "no-store"
    assert '<meta name="referrer" content="no-referrer">' in page.text
    # Opening the link issued no state: a link preview (a chat app's) starts nothing.
    opened = await driver.vault.sessions.get(session["id"])
    assert opened is not None and opened.state_expires_at is None


async def test_declining_says_so_and_what_to_do(driver: Driver) -> None:
    callback, _ = await driver.approve("shopline", button="Deny")
    page = await driver.http.get(callback)
    assert page.status_code == 400
    assert "You declined the connection" in page.text and FAILED_TITLE in page.text
    assert "What to do now:" in page.text and "start again" in page.text


async def test_an_expired_link(driver: Driver) -> None:
    session = await driver.start("ecwid")
    async with driver.vault.engine.begin() as connection:
        await connection.execute(
            update(AuthSessionRow)
            .where(AuthSessionRow.id == session["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    page = await driver.http.get(session["url"])
    assert page.status_code == 410
    assert "This link has expired" in page.text and "ask for a new link" in page.text


async def test_a_used_link_and_a_wrong_one(driver: Driver) -> None:
    session = await driver.start("tiktok_shop")
    done = await driver.http.get(await press(driver.http, session["url"]))
    assert "Store connected" in done.text
    used = await driver.http.get(session["url"])
    assert used.status_code == 410 and "This link was already used" in used.text
    wrong = await driver.http.get(f"{driver.url}/connect?session=nope")
    assert wrong.status_code == 404 and "This link does not work" in wrong.text
    for bad in ({}, {"session": ""}):
        posted = await driver.http.post(f"{driver.url}/connect", data=bad)
        assert posted.status_code == 404


async def test_a_state_that_took_too_long(driver: Driver) -> None:
    callback, session = await driver.approve("aliexpress")
    await driver.expire_state(session["id"])
    page = await driver.http.get(callback)
    assert "This took too long" in page.text and FAILED_TITLE in page.text


async def test_the_connect_button_works_only_from_the_page_this_browser_opened(
    driver: Driver,
) -> None:
    """Another site posting a connect link of its own (to bind the attacker's link to the
    victim's browser) gets no cookie sent and no redirect."""
    session = await driver.start("shopline")
    token = callback_params(session["url"])["session"]
    async with httpx2.AsyncClient(timeout=10) as elsewhere:
        forged = await elsewhere.post(
            f"{driver.url}/connect",
            data={"session": token, "browser_check": "0" * 32},
            headers={"origin": "https://evil.example"},
        )
        assert forged.status_code == 403 and "Open the connect link again" in forged.text
        assert "set-cookie" not in forged.headers
        page = await elsewhere.get(session["url"])
        form = hidden_fields(page.text)
        assert form["browser_check"] not in page.headers["set-cookie"]  # derived, not the secret
        wrong = await elsewhere.post(f"{driver.url}/connect", data={**form, "browser_check": "x"})
        assert wrong.status_code == 403
        assert (await elsewhere.post(f"{driver.url}/connect", data=form)).status_code == 303
    opened = await driver.vault.sessions.get(session["id"])
    assert opened is not None and opened.state_expires_at is not None


async def test_pages_carry_their_security_headers(driver: Driver) -> None:
    session = await driver.start("ecwid")
    for url in (session["url"], f"{driver.url}/signin", f"{driver.url}/connect?session=x"):
        page = await driver.http.get(url)
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
