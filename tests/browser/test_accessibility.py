"""Accessibility basics on every operator page and on the merchant's pages: each field has its
label, each page a `main` landmark and a language, and the keyboard gets to the controls.

Cheap checks, not an audit: they catch the regressions a template edit most easily makes. Each
page is checked as it was just loaded, so Tab starts from the top of the document.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.helpers import (
    ECWID,
    SHOPLINE,
    answer_on_platform,
    check_accessibility_basics,
    connected_id,
    continue_to_platform,
    make_connect_link,
)
from tests.conftest import LiveService


def test_every_page_has_labels_a_main_landmark_a_language_and_keyboard_access(
    page: Page, live: LiveService
) -> None:
    checked: list[str] = []

    def check(title: str) -> None:
        check_accessibility_basics(page)
        checked.append(title)

    # Signing in with the keyboard alone: Tab to the key, type it, Enter.
    page.goto("/")
    check("sign in")
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(live.api_key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Connections", exact=True)).to_be_visible()
    check("dashboard")

    make_connect_link(page, SHOPLINE, "merchant-a11y")
    check("connect link")

    link = page.locator("#connect-link").input_value()
    page.goto(link)
    check("merchant's connect page")
    continue_to_platform(page, SHOPLINE)
    answer_on_platform(page, "a11y-corner")
    connection_id = connected_id(page)
    check("merchant's result page")

    page.goto(f"/connections/{connection_id}")
    check("connection")
    page.get_by_role("button", name="Reveal access token").click()
    expect(page.get_by_role("heading", name="Reveal the access token?")).to_be_visible()
    check("reveal confirmation")

    page.goto("/")
    page.get_by_role("link", name=f"the {ECWID.display_name} App Market").click()
    answer_on_platform(page, "a11y-market", button="Install")
    expect(page.get_by_role("heading", name="App installed")).to_be_visible()
    page.goto("/")
    page.locator("tbody tr", has_text="unclaimed").get_by_role("link").click()
    expect(page.get_by_label("Claim for end user")).to_be_visible()
    check("unclaimed connection")

    for path, title in (("/events", "events"), ("/settings", "settings")):
        page.goto(path)
        check(title)
    assert len(checked) == 10
