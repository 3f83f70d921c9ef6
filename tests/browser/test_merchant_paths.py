"""What a merchant sees when a connection does not happen: they declined on the platform, the
link expired before they opened it, or they opened a link that was already used."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import update

from shopkeys.store.tables import AuthSessionRow
from shopkeys.store.vault import Vault
from tests.browser.helpers import (
    ECWID,
    SHOPLINE,
    answer_on_platform,
    connect_link_over_api,
    connected_id,
    continue_to_platform,
    with_vault,
)
from tests.conftest import LiveService


def connections(page: Page, live: LiveService) -> list[dict[str, object]]:
    answer = page.request.get(f"{live.url}/v1/connections", headers=live.headers)
    assert answer.status == 200, answer.text()
    data: list[dict[str, object]] = answer.json()["data"]
    return data


def expire(live: LiveService, session_id: str) -> None:
    """Move the connect session's expiry into the past, as if the merchant opened it late."""

    async def work(vault: Vault) -> int:
        async with vault.engine.begin() as connection:
            result = await connection.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.id == session_id)
                .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
            )
        return int(result.rowcount)

    assert with_vault(live, work) == 1


def test_the_merchant_declines_on_the_platform(page: Page, live: LiveService) -> None:
    before = connections(page, live)
    session = connect_link_over_api(page, live, ECWID.name, "merchant-who-declines")
    page.goto(session["url"])
    continue_to_platform(page, ECWID)
    answer_on_platform(page, "declining-corner", button="Deny")
    expect(page).to_have_url(re.compile(rf"^{re.escape(live.url)}/oauth/callback/ecwid\?.*error="))
    expect(page.get_by_role("heading", name="You declined the connection")).to_be_visible()
    expect(page.get_by_text("Nothing was shared with the app.")).to_be_visible()
    assert connections(page, live) == before


def test_an_expired_link_says_so(page: Page, live: LiveService) -> None:
    before = connections(page, live)
    session = connect_link_over_api(page, live, ECWID.name, "merchant-who-waited")
    expire(live, session["id"])
    answer = page.goto(session["url"])
    assert answer is not None and answer.status >= 400
    expect(page.get_by_role("heading", name="This link has expired")).to_be_visible()
    expect(page.get_by_text("ask for a new link")).to_be_visible()
    expect(page.get_by_role("button")).to_have_count(0)
    assert connections(page, live) == before


def test_a_used_link_says_so(browser: Browser, page: Page, live: LiveService) -> None:
    session = connect_link_over_api(page, live, SHOPLINE.name, "merchant-who-comes-back")
    page.goto(session["url"])
    continue_to_platform(page, SHOPLINE)
    answer_on_platform(page, "returning-corner")
    connected_id(page)
    # The same link again, later, in another browser.
    other = browser.new_context(base_url=live.url)
    try:
        again = other.new_page()
        again.goto(session["url"])
        expect(again.get_by_role("heading", name="This link was already used")).to_be_visible()
    finally:
        other.close()
