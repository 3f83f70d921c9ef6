"""Forms posted without the session's CSRF token are refused and change nothing: one whose
hidden field was taken out in the page, and POSTs made the way another site would."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.helpers import (
    ALIEXPRESS,
    answer_on_platform,
    connected_id,
    continue_to_platform,
    make_connect_link,
    sign_in,
)
from tests.conftest import LiveService


@pytest.fixture
def connection_id(page: Page, live: LiveService) -> str:
    """Signed in, with one AliExpress store connected; its page is open."""
    page.goto("/signin")
    sign_in(page, live)
    make_connect_link(page, ALIEXPRESS, "merchant-csrf")
    page.get_by_role("link", name="Open it here").click()
    continue_to_platform(page, ALIEXPRESS)
    answer_on_platform(page, "csrf-corner")
    found = connected_id(page)
    page.goto(f"/connections/{found}")
    return found


def test_a_form_without_its_csrf_token_is_refused(page: Page, connection_id: str) -> None:
    refresh = page.locator("form", has=page.get_by_role("button", name="Refresh now"))
    refresh.locator("input[name=csrf]").evaluate("input => input.remove()")
    with page.expect_response(lambda r: r.url.endswith("/refresh")) as posted:
        page.get_by_role("button", name="Refresh now").click()
    assert posted.value.status == 403
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    expect(page.get_by_text("Nothing was changed.")).to_be_visible()

    page.goto(f"/connections/{connection_id}")
    facts = page.locator("dl.facts")
    expect(facts.locator("dt:text-is('Last refresh') + dd")).to_have_text("never")
    expect(page.locator(".timeline")).not_to_contain_text("refreshed")


def test_posts_without_the_token_are_refused(
    page: Page, live: LiveService, connection_id: str
) -> None:
    """With the operator's cookie (the worst case: SameSite keeps it off another site's POST)
    but without the page's token, or with a made-up one."""
    for form in ({}, {"csrf": "guessed"}):
        for action in ("refresh", "disconnect", "reconnect-link"):
            answer = page.request.post(
                f"{live.url}/connections/{connection_id}/{action}", form=form, max_redirects=0
            )
            assert answer.status == 403, (action, form, answer.status)
            assert "This form has expired" in answer.text()
    answer = page.request.post(f"{live.url}/signout", form={}, max_redirects=0)
    assert answer.status == 403

    # Still signed in, and the connection is still there and was never refreshed.
    page.goto(f"/connections/{connection_id}")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator("dl.facts dt:text-is('Last refresh') + dd")).to_have_text("never")


def test_the_sign_in_form_needs_its_token_too(page: Page, live: LiveService) -> None:
    """A login CSRF: another site signing the operator's browser in with its own key."""
    page.goto("/signin")
    answer = page.request.post(
        f"{live.url}/signin", form={"api_key": live.api_key, "next": "/"}, max_redirects=0
    )
    assert answer.status == 403
    assert "This form had expired" in answer.text()
    page.goto("/")
    expect(page).to_have_url(f"{live.url}/signin?next=/")
