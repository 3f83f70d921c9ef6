"""The operators' pages over a real socket: sign-in, sessions, CSRF, and what each page does."""

from __future__ import annotations

import re

import httpx2
import pytest

from shopkeys.api_keys import ApiKeys
from shopkeys.platform import Platform
from shopkeys.sandbox.browser import press
from shopkeys.store.vault import Vault
from tests.conftest import LiveService
from tests.pages.operator import OperatorClient, csrf_of, field_value
from tests.service.test_connect_flow import Driver, assert_clean

PAGES = ("/", "/events", "/settings", "/?status=attention", "/?q=demo")


async def test_every_page_asks_to_sign_in_first(
    live_service: LiveService, http: httpx2.AsyncClient
) -> None:
    for path in (*PAGES, "/connections/con_x"):
        page = await http.get(f"{live_service.url}{path}")
        assert page.status_code == 303, path
        assert page.headers["location"].startswith("/signin?next=/"), path
    # A form posted without a session does nothing and asks to sign in.
    posted = await http.post(f"{live_service.url}/connections/con_x/disconnect", data={})
    assert posted.status_code == 303
    assert posted.headers["location"] == "/signin?next=/"


async def test_sign_in_takes_an_active_admin_key_only(
    live_service: LiveService, http: httpx2.AsyncClient, db_vault: Vault
) -> None:
    client = OperatorClient(http, live_service.url)
    _, reader = await ApiKeys(db_vault).create("reader", "read")
    for wrong in ("sk_nope", reader, ""):
        refused = await client.sign_in(wrong)
        assert refused.status_code == 401
        assert "not an active API key of scope admin" in refused.text
        assert (await http.get(f"{live_service.url}/")).status_code == 303
    signed = await client.sign_in(live_service.api_key, next_path="/settings")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/settings"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert live_service.api_key not in cookie
    assert (await http.get(f"{live_service.url}/settings")).status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil", "x"])
async def test_sign_in_never_sends_the_operator_to_another_site(
    live_service: LiveService, http: httpx2.AsyncClient, target: str
) -> None:
    signed = await OperatorClient(http, live_service.url).sign_in(
        live_service.api_key, next_path=target
    )
    assert signed.headers["location"] == "/"


async def test_sign_in_form_needs_its_csrf_token(
    live_service: LiveService, http: httpx2.AsyncClient
) -> None:
    # A login CSRF: another site posts its own key to sign the victim in as the attacker.
    posted = await http.post(
        f"{live_service.url}/signin", data={"api_key": live_service.api_key, "next": "/"}
    )
    assert posted.status_code == 403
    assert "This form had expired" in posted.text
    assert (await http.get(f"{live_service.url}/")).status_code == 303


async def test_forms_without_the_sessions_csrf_token_are_refused(
    operator: OperatorClient, driver: Driver, http: httpx2.AsyncClient
) -> None:
    connection = await driver.connect("tiktok_shop")
    for data in ({}, {"csrf": "forged"}):
        refused = await http.post(
            f"{operator.url}/connections/{connection['id']}/disconnect", data=data
        )
        assert refused.status_code == 403
        assert "This form has expired" in refused.text
    assert (await driver.api("GET", f"/v1/connections/{connection['id']}")).status_code == 200


async def test_a_revoked_key_ends_its_sessions(operator: OperatorClient, db_vault: Vault) -> None:
    assert (await operator.get("/")).status_code == 200
    keys = ApiKeys(db_vault)
    key = next(k for k in await keys.list() if k.revoked_at is None)
    await keys.revoke(key.id)
    assert (await operator.get("/")).status_code == 303


async def test_sign_out(operator: OperatorClient) -> None:
    out = await operator.post("/signout")
    assert out.status_code == 303
    assert out.headers["location"] == "/signin"
    assert (await operator.get("/")).status_code == 303


async def test_the_dashboard_lists_connections_and_filters_them(
    operator: OperatorClient, driver: Driver
) -> None:
    ids = {p: (await driver.connect(p, end_user_id=f"user-{p}"))["id"] for p in Platform}
    page = await operator.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    for connection_id in ids.values():
        assert f"/connections/{connection_id}" in page.text
    assert "No refreshes in the last 7 days yet." in page.text and "<svg" not in page.text
    await operator.post(f"/connections/{ids['shopline']}/refresh")
    page = await operator.get("/")
    assert "Refreshes and failed refreshes by day" in page.text
    assert ": 1 refreshed, 0 failed" in page.text
    only = await operator.get("/?platform=ecwid")
    assert f"/connections/{ids['ecwid']}" in only.text
    assert f"/connections/{ids['shopline']}" not in only.text
    found = await operator.get("/?q=USER-SHOPLINE")
    assert f"/connections/{ids['shopline']}" in found.text
    assert f"/connections/{ids['ecwid']}" not in found.text
    # Unknown filter values are ignored, not passed on.
    assert (await operator.get("/?platform=nope&status=%27&after=zz")).status_code == 200
    none = await operator.get("/?status=needs_reauth")
    assert "No connection matches these filters" in none.text


async def test_connection_page_actions(operator: OperatorClient, driver: Driver) -> None:
    connection = await driver.connect("shopline")
    cid = connection["id"]
    page = await operator.get(f"/connections/{cid}")
    assert page.status_code == 200
    assert connection["account_id"] in page.text

    refreshed = await operator.post(f"/connections/{cid}/refresh")
    assert "The tokens were refreshed." in refreshed.text
    assert "refreshed" in await driver.kinds(cid)

    link_page = await operator.post(f"/connections/{cid}/reconnect-link")
    link = field_value(link_page.text, "reconnect-link")
    assert link.startswith(f"{operator.url}/connect?session=")
    merchant = await driver.http.get(link)
    assert "Connect your SHOPLINE store" in merchant.text

    asked = await operator.post(f"/connections/{cid}/reveal")
    assert "Reveal the access token?" in asked.text
    assert "token_revealed" not in await driver.kinds(cid)
    revealed = await operator.post(f"/connections/{cid}/reveal", {"confirm": "yes"})
    stored = await driver.stored(cid)
    assert field_value(revealed.text, "access-token") == stored.access_token
    assert revealed.headers["cache-control"] == "no-store"
    events = await driver.events(cid)
    reveal = next(e for e in events if e["kind"] == "token_revealed")
    assert reveal["detail"]["api_key_name"] == "sandbox"
    assert_clean(str(events), {stored.access_token}, "the event log")
    timeline = await operator.get(f"/connections/{cid}")
    assert "token revealed" in timeline.text

    gone = await operator.post(f"/connections/{cid}/disconnect")
    assert gone.status_code == 303
    assert gone.headers["location"] == "/?notice=disconnected"
    assert (
        "disconnected and its tokens deleted" in (await operator.get(gone.headers["location"])).text
    )
    assert (await operator.get(f"/connections/{cid}")).status_code == 404
    assert (await operator.post(f"/connections/{cid}/refresh")).status_code == 404


async def test_refresh_now_says_why_it_did_not_work(
    operator: OperatorClient, driver: Driver
) -> None:
    connection = await driver.connect("ecwid")  # Ecwid tokens never expire
    await operator.get(f"/connections/{connection['id']}")
    answer = await operator.post(f"/connections/{connection['id']}/refresh")
    assert answer.status_code == 502
    assert "The refresh did not work: Ecwid access tokens do not expire" in answer.text


async def test_claiming_an_app_market_install(
    operator: OperatorClient, driver: Driver, live_service: LiveService
) -> None:
    market = live_service.app.state.sandbox.app_market_paths()["ecwid"]
    callback = await press(driver.http, f"{live_service.url}{market}", button="Install")
    installed = await driver.http.get(callback)
    assert installed.status_code == 200, installed.text
    unclaimed = await operator.get("/")
    cid = re.search(r'href="/connections/(con_[^"]+)"', unclaimed.text)
    assert cid and "unclaimed" in unclaimed.text
    page = await operator.get(f"/connections/{cid.group(1)}")
    assert "Claim for end user" in page.text
    claimed = await operator.post(f"/connections/{cid.group(1)}/claim", {"end_user_id": "m-7"})
    assert "Claimed for m-7." in claimed.text
    assert "Claim for end user" not in claimed.text
    shown = (await driver.api("GET", f"/v1/connections/{cid.group(1)}")).json()
    assert shown["end_user_id"] == "m-7"
    again = await operator.post(f"/connections/{cid.group(1)}/claim", {"end_user_id": "other"})
    assert again.status_code == 409


async def test_no_page_shows_a_token_unless_revealed(
    operator: OperatorClient, driver: Driver
) -> None:
    ids = [(await driver.connect(p))["id"] for p in Platform]
    for cid in ids:
        stored = await driver.remember_tokens(cid)
        if stored.public_token:
            driver.secrets.add(stored.public_token)
    pages = [*PAGES, *(f"/connections/{cid}" for cid in ids), "/signin"]
    for path in pages:
        page = await operator.get(path)
        assert page.status_code == 200, path
        assert_clean(page.text, driver.secrets, path)
    for cid in ids:
        for action in ("refresh", "reconnect-link", "reveal"):
            answer = await operator.post(f"/connections/{cid}/{action}")
            tokens = {t for t in driver.secrets if t}
            assert_clean(answer.text, tokens - {(await driver.stored(cid)).access_token}, action)
    link = await operator.connect_link("aliexpress")
    assert_clean((await driver.http.get(link)).text, driver.secrets, "the connect page")


async def test_settings_page_shows_redirect_uris_and_no_secret(
    operator: OperatorClient, live_service: LiveService
) -> None:
    page = await operator.get("/settings")
    assert page.status_code == 200
    for platform in Platform:
        assert live_service.settings.platform(platform).redirect_uri in page.text
    assert "ktest" in page.text  # the key id, from the test key ring
    secrets = {live_service.api_key}
    for platform in Platform:
        credentials = live_service.settings.platform(platform).credentials
        if credentials is not None:
            secrets.add(credentials.client_secret)
    secrets.add((live_service.settings.encryption_keys or pytest.fail()).get_secret_value())
    assert_clean(page.text, secrets, "the settings page")


async def test_static_files_and_csrf_token_per_session(
    live_service: LiveService, http: httpx2.AsyncClient
) -> None:
    css = await http.get(f"{live_service.url}/static/shopkeys.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    first = csrf_of((await http.get(f"{live_service.url}/signin")).text)
    async with httpx2.AsyncClient() as other:
        second = csrf_of((await other.get(f"{live_service.url}/signin")).text)
    assert first != second


@pytest.mark.parametrize(
    "path",
    [
        "/?after=%C2%B2.x",
        "/?after=" + "9" * 5000 + ".x",
        "/?after=99999999999999999999.x",
        "/?after=7.x",
        "/events?before=%C2%B2.x",
        "/events?before=99999999999999999999.x",
        "/?q=" + "x" * 5000,
    ],
)
async def test_hand_edited_addresses_are_ignored(operator: OperatorClient, path: str) -> None:
    assert (await operator.get(path)).status_code == 200


async def test_a_nul_in_the_address_is_refused_before_the_page(operator: OperatorClient) -> None:
    assert (await operator.get("/?q=%00")).status_code == 422


@pytest.mark.parametrize(
    ("value", "words"),
    [("a\x00b", "contains a NUL character"), ("x" * 256, "longer than 255 characters")],
)
async def test_form_text_that_cannot_be_stored_is_refused(
    operator: OperatorClient, value: str, words: str
) -> None:
    await operator.get("/")
    made = await operator.post("/connect-links", {"platform": "ecwid", "end_user_id": value})
    assert made.status_code == 400 and words in made.text
