"""The Python client against the live service, on both databases, the async and the sync client
alike: tokens, connections and their pages, connect sessions, every kind of error, and calls to
each platform's API through `api()` and the proxy."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from shopkeys.api_keys import ApiKeys
from shopkeys.client import (
    BadRequest,
    Client,
    Conflict,
    Connection,
    Forbidden,
    NeedsReauth,
    NotFound,
    NotRefreshable,
    RateLimited,
    ShopkeysApiError,
    SyncClient,
    Unauthorized,
    error_from_response,
)
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.sandbox.core import Fault
from shopkeys.store.vault import Vault
from tests.service import test_connect_flow as flow
from tests.service.test_api import import_aliexpress
from tests.service.test_connect_flow import Driver

# The fixtures live beside the end-to-end test; pytest finds them by these module-level names.
db_vault = flow.db_vault
driver = flow.driver


class Either:
    """The async or the sync client behind one awaitable face, so that every test runs on both:
    `await shopkeys.token(cid)` calls the sync client directly (the service runs in a thread of
    its own, so blocking this loop for the call is harmless)."""

    def __init__(self, client: Client | SyncClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call

    async def every(self, **filters: Any) -> list[Connection]:
        """`iter_connections` to the end."""
        if isinstance(self.client, Client):
            return [c async for c in self.client.iter_connections(**filters)]
        return list(self.client.iter_connections(**filters))

    async def close(self) -> None:
        if isinstance(self.client, Client):
            await self.client.aclose()
        else:
            self.client.close()


def make(kind: str, url: str, api_key: str) -> Either:
    return Either(Client(url, api_key) if kind == "async" else SyncClient(url, api_key))


@pytest.fixture(params=["async", "sync"])
async def shopkeys(request: pytest.FixtureRequest, driver: Driver) -> AsyncIterator[Either]:
    client = make(request.param, driver.url, driver.live.api_key)
    yield client
    await client.close()


def assert_hidden(driver: Driver, *shown: object) -> None:
    """No token, link secret or API key the test has met appears in any of `shown`."""
    secrets = {*driver.secrets, driver.live.api_key}
    for thing in shown:
        for text in (str(thing), repr(thing)):
            leaked = [s for s in secrets if s in text]
            assert not leaked, (text, leaked)


# -- tokens ---------------------------------------------------------------------------------------


async def test_token_and_current_token(driver: Driver, shopkeys: Either) -> None:
    connection = await driver.connect("shopline", end_user_id="alice")
    cid = connection["id"]
    stored = await driver.stored(cid)

    token = await shopkeys.token(cid)
    assert token.access_token == stored.access_token
    assert token.connection_id == cid
    assert token.provider == "shopline"
    assert token.account_id == connection["account_id"]
    assert token.public_token is None
    assert isinstance(token.expires_at, datetime)
    assert token.expires_at.tzinfo is not None
    assert token.expires_at > datetime.now(UTC)

    assert await shopkeys.current_token("alice") == token
    assert await shopkeys.current_token("alice", provider="shopline") == token
    with pytest.raises(NotFound):
        await shopkeys.current_token("alice", provider="ecwid")
    assert_hidden(driver, token, shopkeys.client)
    assert "shopline" in repr(token)


async def test_token_that_never_expires(driver: Driver, shopkeys: Either) -> None:
    connection = await driver.connect("ecwid", end_user_id="bob")
    token = await shopkeys.token(connection["id"])
    assert token.provider == "ecwid"
    assert token.expires_at is None
    assert token.access_token == (await driver.stored(connection["id"])).access_token


# -- connections ----------------------------------------------------------------------------------


async def test_connections_filters_and_pages(driver: Driver, shopkeys: Either) -> None:
    imported = [
        await import_aliexpress(driver, f"50000000{n:02d}", "alice" if n % 2 else None)
        for n in range(5)
    ]
    shopline = await driver.connect("shopline", end_user_id="alice")
    everything = sorted([c["id"] for c in imported] + [shopline["id"]])

    page = await shopkeys.connections()
    assert [c.id for c in page] == everything
    assert len(page) == 6
    assert page.next_after is None
    shown = next(c for c in page if c.id == shopline["id"])
    assert shown.provider == "shopline"
    assert shown.status == "active"
    assert shown.end_user_id == "alice"
    assert shown.scopes and shown.shops
    assert shown.refreshable is True
    assert shown.created_at.tzinfo is not None
    assert shown.version == 1

    async def ids(**filters: Any) -> list[str]:
        return [c.id for c in await shopkeys.connections(**filters)]

    assert await ids(provider="shopline") == [shopline["id"]]
    alice = sorted([c["id"] for c in imported if c["end_user_id"] == "alice"] + [shopline["id"]])
    assert await ids(end_user_id="alice") == alice
    nobody = sorted(c["id"] for c in imported if c["end_user_id"] is None)
    assert await ids(claimed=False) == nobody
    assert await ids(claimed=True) == alice
    assert await ids(status="needs_reauth") == []
    assert await ids(provider="aliexpress", end_user_id="alice") == [
        i for i in alice if i != shopline["id"]
    ]

    # By hand, a page at a time, and by the iterator, which follows next_after itself.
    first = await shopkeys.connections(limit=4)
    assert [c.id for c in first] == everything[:4]
    assert first.next_after == everything[3]
    second = await shopkeys.connections(limit=4, after=first.next_after)
    assert [c.id for c in second] == everything[4:]
    assert second.next_after is None
    assert [c.id for c in await shopkeys.every(page_size=2)] == everything
    assert [c.id for c in await shopkeys.every(page_size=1, end_user_id="alice")] == alice
    assert await shopkeys.every(provider="ecwid") == []

    with pytest.raises(BadRequest) as refused:
        await shopkeys.connections(status="asleep")
    assert refused.value.status == 422
    with pytest.raises(ValueError, match="limit"):
        await shopkeys.connections(limit=501)


async def test_connection_claim_refresh_delete(driver: Driver, shopkeys: Either) -> None:
    installed = await import_aliexpress(driver, "6000000001")
    cid = installed["id"]
    assert (await shopkeys.connection(cid)).end_user_id is None

    claimed = await shopkeys.claim(cid, "carol")
    assert claimed.end_user_id == "carol"
    with pytest.raises(Conflict) as taken:
        await shopkeys.claim(cid, "dave")
    assert taken.value.code == "already_claimed"
    moved = await shopkeys.claim(cid, "dave", expected_end_user_id="carol")
    assert moved.end_user_id == "dave"

    # An import without a refresh token has nothing to refresh.
    with pytest.raises(NotRefreshable) as nothing:
        await shopkeys.refresh(cid)
    assert isinstance(nothing.value, Conflict)
    assert nothing.value.code == "not_refreshable"

    connected = await driver.connect("tiktok_shop", end_user_id="dave")
    refreshed = await shopkeys.refresh(connected["id"])
    assert refreshed.id == connected["id"]
    assert refreshed.last_refreshed_at is not None
    assert refreshed.version == connected["version"] + 1
    await driver.remember_tokens(connected["id"])

    assert await shopkeys.delete(cid) is None
    for gone in ("connection", "token", "refresh", "delete"):
        with pytest.raises(NotFound) as missing:
            await getattr(shopkeys, gone)(cid)
        assert missing.value.code == "not_found"
        assert_hidden(driver, missing.value)


# -- connect sessions -----------------------------------------------------------------------------


async def test_connect_session_connects_a_store(driver: Driver, shopkeys: Either) -> None:
    return_to = f"{driver.url}/after-connect"
    session = await shopkeys.connect_session("shopline", end_user_id="erin", return_to=return_to)
    driver.secrets.add(callback_params(session.url)["session"])
    assert session.id.startswith("cs_")
    assert session.url.startswith(f"{driver.url}/connect?")
    assert timedelta(minutes=25) < session.expires_at - datetime.now(UTC) <= timedelta(minutes=30)
    assert_hidden(driver, session)
    assert session.id in repr(session)

    # The link works as the merchant's: approved on the simulator, the store is erin's.
    callback = await press(driver.http, session.url)
    done = await driver.http.get(callback)
    assert done.status_code in (200, 303), done.text
    token = await shopkeys.current_token("erin")
    assert token.provider == "shopline"
    await driver.remember_tokens(token.connection_id)
    assert_hidden(driver, token)

    with pytest.raises(BadRequest):
        await shopkeys.connect_session("amazon", end_user_id="erin")


# -- errors ---------------------------------------------------------------------------------------


async def test_keys_that_do_not_open_the_api(
    driver: Driver, db_vault: Vault, shopkeys: Either
) -> None:
    kind = "async" if isinstance(shopkeys.client, Client) else "sync"
    bad_key = "sk_not_a_key_" + "x" * 20
    stranger = make(kind, driver.url, bad_key)
    try:
        with pytest.raises(Unauthorized) as refused:
            await stranger.connections()
        assert refused.value.status == 401
        assert refused.value.code == "unauthorized"
        assert "not valid" in refused.value.message
        for shown in (refused.value, stranger.client):
            assert bad_key not in str(shown) and bad_key not in repr(shown)
    finally:
        await stranger.close()

    _, read_key = await ApiKeys(db_vault).create("reader", "read")
    reader = make(kind, driver.url, read_key)
    try:
        assert len(await reader.connections()) == 0
        with pytest.raises(Forbidden) as forbidden:
            await reader.connect_session("ecwid", end_user_id="x")
        assert forbidden.value.code == "forbidden"
        assert read_key not in repr(forbidden.value)
    finally:
        await reader.close()


async def test_needs_reauth(driver: Driver, shopkeys: Either) -> None:
    connection = await driver.connect("shopline", end_user_id="frank")
    cid = connection["id"]
    simulator: Any = driver.live.simulator("shopline")
    for issued in simulator.refresh_tokens.values():
        issued.revoked = True
    await driver.expire(cid)

    with pytest.raises(NeedsReauth) as dead:
        await shopkeys.token(cid)
    error = dead.value
    assert isinstance(error, Conflict) and isinstance(error, ShopkeysApiError)
    assert (error.status, error.code) == (409, "needs_reauth")
    assert_hidden(driver, error)
    with pytest.raises(NeedsReauth):
        await shopkeys.current_token("frank")
    with pytest.raises(NeedsReauth):
        await shopkeys.refresh(cid)
    assert (await shopkeys.connection(cid)).status == "needs_reauth"
    assert [c.id for c in await shopkeys.connections(status="needs_reauth")] == [cid]


async def test_rate_limited(driver: Driver, shopkeys: Either) -> None:
    connection = await driver.connect("shopline")
    cid = connection["id"]
    await driver.expire(cid)
    driver.live.simulator("shopline").faults.set("refresh", Fault(status=429, retry_after=30))
    with pytest.raises(RateLimited) as limited:
        await shopkeys.token(cid)
    assert limited.value.status == 429
    assert limited.value.code == "rate_limited"
    assert limited.value.retry_after == 30
    assert_hidden(driver, limited.value)


# -- the platform's API through api() --------------------------------------------------------------


async def through(
    shopkeys: Either, cid: str, method: str, path: str, **kwargs: Any
) -> httpx2.Response:
    """One call on a fresh `api()` client, closed after it."""
    shop = kwargs.pop("shop", None)
    if isinstance(shopkeys.client, Client):
        async with shopkeys.client.api(cid, shop=shop) as api:
            answer = await api.request(method, path, **kwargs)
    else:
        with shopkeys.client.api(cid, shop=shop) as sync_api:
            answer = sync_api.request(method, path, **kwargs)
    assert answer.request.url.path.startswith(f"/v1/proxy/{cid}/")
    return answer


async def test_api_calls_each_platform_through_the_proxy(driver: Driver, shopkeys: Either) -> None:
    ecwid = await driver.connect("ecwid")
    profile = await through(shopkeys, ecwid["id"], "GET", "/profile")
    assert profile.status_code == 200, profile.text
    assert str(profile.json()["generalInfo"]["storeId"]) == ecwid["account_id"]
    listed = await through(shopkeys, ecwid["id"], "GET", "/products", params={"limit": 1})
    assert listed.status_code == 200, listed.text

    tiktok = await driver.connect("tiktok_shop")
    [shop] = tiktok["shops"]
    found = await through(
        shopkeys,
        tiktok["id"],
        "POST",
        "/product/202309/products/search",
        params={"page_size": "10"},
        json={"status": "ACTIVATE"},
        shop=shop["id"],
    )
    assert found.status_code == 200 and found.json()["code"] == 0, found.text

    aliexpress = await driver.connect("aliexpress")
    method = {"method": "aliexpress.merchant.profile.get"}
    merchant = await through(shopkeys, aliexpress["id"], "GET", "/sync", params=method)
    assert "aliexpress_merchant_profile_get_response" in merchant.json(), merchant.text

    # Shopkeys' own refusals come back as answers too; error_from_response reads them.
    foreign = await through(
        shopkeys, tiktok["id"], "GET", "/order/202309/orders", params={"ids": "1"}, shop="7"
    )
    refused = error_from_response(foreign)
    assert isinstance(refused, BadRequest) and refused.code == "bad_api_call"
    missing = error_from_response(await through(shopkeys, "con_nothing", "GET", "/profile"))
    assert isinstance(missing, NotFound)
