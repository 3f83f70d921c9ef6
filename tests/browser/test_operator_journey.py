"""An operator's day in a real browser, against the real service and its four simulators.

Sign in (a page without a session sends you there first), connect a store on each platform
through the real pages and redirects (one from a phone, as a merchant would), see them on the
dashboard, refresh one, reveal its token, get a re-connect link, claim an App Market install,
redeliver an event to the app, disconnect one, sign out. Every page seen on the way is kept and
searched for the stores' tokens at the end: only the page that reveals one may show it.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.browser.helpers import (
    ALIEXPRESS,
    CONNECT_LINK,
    ECWID,
    PHONE,
    PLATFORMS,
    SCREENSHOTS,
    SHOPLINE,
    TIKTOK_SHOP,
    Receiver,
    access_token,
    answer_on_platform,
    connected_id,
    continue_to_platform,
    fits_the_width,
    make_connect_link,
    sign_in,
    stored_secrets,
)
from tests.conftest import LiveService


@pytest.fixture(scope="module")
def live(live_with_webhook: LiveService) -> LiveService:
    """This module's service sends its events to the module's webhook receiver."""
    return live_with_webhook


class Seen:
    """The HTML of every page the test looked at, to search for tokens at the end."""

    def __init__(self) -> None:
        self.pages: list[tuple[str, str]] = []

    def keep(self, page: Page) -> None:
        self.pages.append((page.url, page.content()))


def test_the_operator_journey(
    browser: Browser, page: Page, live: LiveService, receiver: Receiver
) -> None:
    seen = Seen()
    secrets: set[str] = set()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    # A page without a session sends the operator to sign in, and back to it afterwards.
    page.goto("/settings")
    expect(page).to_have_url(f"{live.url}/signin?next=/settings")
    seen.keep(page)
    sign_in(page, live)
    expect(page).to_have_url(f"{live.url}/settings")
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    expect(page.get_by_text(receiver.url)).to_be_visible()
    seen.keep(page)

    # A store on each platform, through the connect link's page, the platform and the callback.
    ids: dict[str, str] = {}
    for platform in PLATFORMS:
        page.goto("/")
        link = make_connect_link(page, platform, f"merchant-{platform.name}")
        seen.keep(page)
        if platform is SHOPLINE:
            ids[platform.name] = _connect_from_a_phone(browser, live, link, seen)
            continue
        page.get_by_role("link", name="Open it here").click()
        expect(page).to_have_url(link)
        seen.keep(page)
        continue_to_platform(page, platform)
        seen.keep(page)
        answer_on_platform(page, platform.login)
        ids[platform.name] = connected_id(page)
        seen.keep(page)
    secrets |= stored_secrets(live)
    assert len(secrets) >= 4

    # The four on the dashboard.
    page.goto("/")
    table = page.get_by_role("table", name="Connections, those that need attention first")
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(4)
    for platform in PLATFORMS:
        row = rows.filter(has=page.locator(f"a[href='/connections/{ids[platform.name]}']"))
        expect(row).to_have_count(1)
        expect(row).to_contain_text(f"merchant-{platform.name}")
        expect(row.locator(".status")).to_have_text("healthy")
    seen.keep(page)

    # One of them: refresh it now.
    ali = ids[ALIEXPRESS.name]
    page.locator(f"a[href='/connections/{ali}']").click()
    expect(page.get_by_role("heading", name="Connection", exact=True)).to_be_visible()
    seen.keep(page)
    page.get_by_role("button", name="Refresh now").click()
    expect(page.get_by_role("status")).to_have_text("The tokens were refreshed.")
    expect(page.locator(".timeline")).to_contain_text("refreshed")
    page.screenshot(path=SCREENSHOTS / "connection.png")
    seen.keep(page)
    secrets |= stored_secrets(live)

    # The dashboard again, its chart showing that refresh: the README's picture.
    page.goto("/")
    expect(page.locator(".chart svg")).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "dashboard.png", full_page=True)
    seen.keep(page)
    page.goto(f"/connections/{ali}")

    # Reveal its access token: a confirmation first, then the token, recorded in the timeline.
    page.get_by_role("button", name="Reveal access token").click()
    expect(page.get_by_role("heading", name="Reveal the access token?")).to_be_visible()
    seen.keep(page)
    page.get_by_role("button", name="Reveal it").click()
    expect(page.get_by_role("heading", name="Access token")).to_be_visible()
    token = access_token(live, ali)
    expect(page.locator("#access-token")).to_have_value(token)
    revealed = page.content()
    page.get_by_role("link", name="←").click()
    expect(page.locator(".timeline li").first).to_contain_text("token revealed")
    seen.keep(page)

    # A re-connect link for the merchant.
    page.get_by_role("button", name="Re-connect link").click()
    expect(page.locator("#reconnect-link")).to_have_value(CONNECT_LINK)
    seen.keep(page)

    # An install from the (simulated) Ecwid App Market arrives unclaimed; claim it.
    page.goto("/")
    page.get_by_role("link", name="the Ecwid App Market").click()
    expect(page.get_by_role("button", name="Install", exact=True)).to_be_visible()
    seen.keep(page)
    answer_on_platform(page, "market-corner", button="Install")
    expect(page.get_by_role("heading", name="App installed")).to_be_visible()
    seen.keep(page)
    page.goto("/")
    unclaimed = page.locator("tbody tr", has_text="unclaimed")
    expect(unclaimed).to_have_count(1)
    unclaimed.get_by_role("link").click()
    expect(page.get_by_label("Claim for end user")).to_be_visible()
    seen.keep(page)
    page.get_by_label("Claim for end user").fill("merchant-from-the-market")
    page.get_by_role("button", name="Claim", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Claimed for merchant-from-the-market.")
    expect(page.locator("dl.facts")).to_contain_text("merchant-from-the-market")
    expect(page.get_by_label("Claim for end user")).to_have_count(0)
    seen.keep(page)
    secrets |= stored_secrets(live)

    # The events went to the app's webhook; send one again.
    page.wait_for_function(
        """async () => (await (await fetch('/events?status=delivered')).text())
            .includes('>Redeliver</button>')""",
        polling=100,
    )
    page.goto("/events")
    seen.keep(page)
    again = page.get_by_role("button", name="Redeliver").first
    delivery_id = (again.get_attribute("aria-label") or "").split()[-1]
    assert delivery_id in receiver.ids
    again.click()
    expect(page.get_by_role("status")).to_have_text("The event will be sent again in a moment.")
    seen.keep(page)
    receiver.wait_until(lambda ids: ids.count(delivery_id) == 2)

    # Disconnect one, after the browser's confirmation.
    tiktok = ids[TIKTOK_SHOP.name]
    page.goto(f"/connections/{tiktok}")
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Disconnect").click()
    expect(page).to_have_url(f"{live.url}/?notice=disconnected")
    expect(page.get_by_role("status")).to_have_text(
        "The connection was disconnected and its tokens deleted."
    )
    assert len(asked) == 1 and asked[0].startswith("Disconnect ")
    expect(page.locator(f"a[href='/connections/{tiktok}']")).to_have_count(0)
    expect(page.locator(f"a[href='/connections/{ids[ECWID.name]}']")).to_have_count(1)
    seen.keep(page)

    # Sign out: back to signing in, and the pages ask for it again.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live.url}/signin")
    page.goto("/")
    expect(page).to_have_url(f"{live.url}/signin?next=/")
    seen.keep(page)

    # No page but the one that reveals it ever carried a token.
    assert token in revealed, "the check below cannot see tokens"
    assert len(seen.pages) > 20
    for url, html in seen.pages:
        shown = [secret[:6] + "…" for secret in secrets if secret in html]
        assert not shown, f"{url} shows tokens {shown}"


def _connect_from_a_phone(browser: Browser, live: LiveService, link: str, seen: Seen) -> str:
    """The merchant opens the connect link on their phone and connects their store there."""
    phone = browser.new_context(**PHONE, base_url=live.url)
    try:
        page = phone.new_page()
        page.goto(link)
        continue_button = page.get_by_role("button", name=f"Continue to {SHOPLINE.display_name}")
        expect(continue_button).to_be_visible()
        assert fits_the_width(page), "the connect page scrolls sideways on a phone"
        page.screenshot(path=SCREENSHOTS / "connect-phone.png")
        seen.keep(page)
        continue_button.tap()
        expect(page.get_by_label("Store login")).to_be_visible()
        assert fits_the_width(page), "the platform's page scrolls sideways on a phone"
        seen.keep(page)
        answer_on_platform(page, SHOPLINE.login)
        connection_id = connected_id(page)
        assert fits_the_width(page), "the result page scrolls sideways on a phone"
        seen.keep(page)
        return connection_id
    finally:
        phone.close()
