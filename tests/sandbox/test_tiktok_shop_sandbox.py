"""TikTok Shop against its simulator, over a real socket."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

import httpx2
import pytest

from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    ConfigurationError,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Grant
from shopkeys.providers import AppCredentials
from shopkeys.providers.tiktok_shop import TikTokShop, sign
from shopkeys.sandbox.browser import BrowserError, callback_params, press
from shopkeys.sandbox.core import Fault
from shopkeys.sandbox.tiktok_shop import TikTokShopSimulator
from tests.conftest import LiveSandbox

NAME = "tiktok_shop"
SHOPS = "/authorization/202309/shops"


@dataclass
class Env:
    live: LiveSandbox
    sim: TikTokShopSimulator
    tts: TikTokShop

    @property
    def base(self) -> str:
        return self.live.base_url(NAME)

    @property
    def redirect_uri(self) -> str:
        return self.live.redirect_uri(NAME)

    def provider(self, **changes: Any) -> TikTokShop:
        app = self.sim.app
        credentials = AppCredentials(app.client_id, app.client_secret, service_id=app.service_id)
        return TikTokShop(replace(credentials, **changes), base_url=self.base, clock=self.sim.clock)

    async def callback(self, http: httpx2.AsyncClient, login: str = "demo-store") -> dict[str, str]:
        location = await press(
            http, self.tts.authorization_url("st4te", self.redirect_uri), login=login
        )
        assert location.startswith(self.redirect_uri + "?")
        return callback_params(location)

    async def connect(self, http: httpx2.AsyncClient, login: str = "demo-store") -> Grant:
        params = await self.callback(http, login)
        code = params.pop("code")
        return await self.tts.exchange_code(http, code, self.redirect_uri, **params)


@pytest.fixture
def env(live_sandbox: LiveSandbox, frozen_now: datetime) -> Iterator[Env]:
    """The simulator, its clock frozen: the expiries tests compare are exact, not near enough."""
    sim = cast(TikTokShopSimulator, live_sandbox.simulator(NAME))
    saved = replace(sim.lifetimes)
    tts = cast(TikTokShop, live_sandbox.provider(NAME))
    yield Env(live_sandbox, sim, tts)
    sim.lifetimes = saved
    sim.decline_callback = TikTokShopSimulator.decline_callback
    sim.rotate_refresh_tokens = TikTokShopSimulator.rotate_refresh_tokens


async def test_the_whole_flow(env: Env, http: httpx2.AsyncClient) -> None:
    params = await env.callback(http)
    assert list(params) == ["app_key", "code", "locale", "shop_region", "state"]
    assert params["app_key"] == env.sim.app.client_id and params["state"] == "st4te"
    code = params.pop("code")
    grant = await env.tts.exchange_code(http, code, env.redirect_uri, **params)

    now = env.sim.clock()
    assert grant.access_expires_at is not None and grant.refresh_expires_at is not None
    assert grant.access_expires_at == now + timedelta(days=7)
    assert grant.refresh_expires_at - now > timedelta(days=365 * 99)
    assert grant.scopes and "seller.authorization.info" in grant.scopes
    assert grant.account_name == "Demo Store"
    assert grant.raw["shop_region"] == params["shop_region"]

    account = await env.tts.identify(http, grant)
    assert account.account_id == grant.account_id
    (shop,) = account.shops
    assert shop.region == params["shop_region"] and shop.extra["cipher"].startswith("ROW_")
    assert shop.extra["seller_type"] == "LOCAL"

    refreshed = await env.tts.refresh(http, cast(str, grant.refresh_token))
    assert refreshed.access_token != grant.access_token
    assert refreshed.refresh_token != grant.refresh_token
    assert refreshed.account_id == grant.account_id
    with pytest.raises(AuthorizationDead) as caught:
        await env.tts.refresh(http, cast(str, grant.refresh_token))
    assert caught.value.code == "36004005"
    again = await env.tts.refresh(http, cast(str, refreshed.refresh_token))
    assert (await env.tts.identify(http, again)).shops[0].id == shop.id

    with pytest.raises(AuthorizationDead) as caught:
        await env.tts.exchange_code(http, code, env.redirect_uri)
    assert caught.value.code == "36004004"


async def test_same_login_same_account(env: Env, http: httpx2.AsyncClient) -> None:
    first = await env.connect(http, "store-one")
    second = await env.connect(http, "store-one")
    other = await env.connect(http, "store-two")
    assert first.account_id == second.account_id != other.account_id


async def test_without_rotation_the_refresh_token_stays(env: Env, http: httpx2.AsyncClient) -> None:
    env.sim.rotate_refresh_tokens = False
    grant = await env.connect(http)
    refreshed = await env.tts.refresh(http, cast(str, grant.refresh_token))
    assert refreshed.refresh_token == grant.refresh_token
    assert refreshed.refresh_expires_at == grant.refresh_expires_at
    await env.tts.refresh(http, cast(str, grant.refresh_token))


async def test_expired_code(env: Env, http: httpx2.AsyncClient) -> None:
    params = await env.callback(http)
    env.sim.clock.advance(env.sim.lifetimes.code + 1)
    with pytest.raises(AuthorizationDead) as caught:
        await env.tts.exchange_code(http, params["code"], env.redirect_uri)
    assert caught.value.code == "36004004"


async def test_unknown_code(env: Env, http: httpx2.AsyncClient) -> None:
    with pytest.raises(AuthorizationDead):
        await env.tts.exchange_code(http, "TTP_made-up", env.redirect_uri)


async def test_wrong_secret_or_key_is_rejected(env: Env, http: httpx2.AsyncClient) -> None:
    params = await env.callback(http)
    for wrong in (env.provider(client_secret="wrong"), env.provider(client_id="wrong")):
        with pytest.raises(RequestRejected) as caught:
            await wrong.exchange_code(http, params["code"], env.redirect_uri)
        assert caught.value.code == "36009004"
        assert "wrong" not in str(caught.value)
    # The refused attempts did not burn the code.
    await env.tts.exchange_code(http, params["code"], env.redirect_uri)


async def test_bad_signature_is_rejected(env: Env, http: httpx2.AsyncClient) -> None:
    grant = await env.connect(http)
    with pytest.raises(RequestRejected) as caught:
        await env.provider(client_secret="not-the-secret").identify(http, grant)
    assert (caught.value.code, caught.value.status) == ("106001", 401)


async def test_access_token_expires(env: Env, http: httpx2.AsyncClient) -> None:
    env.sim.lifetimes.access = 60
    grant = await env.connect(http)
    assert grant.access_expires_at is not None
    assert grant.access_expires_at == env.sim.clock() + timedelta(seconds=60)
    env.sim.clock.advance(61)
    with pytest.raises(AccessExpired) as caught:
        await env.tts.identify(http, grant)
    assert caught.value.code == "105002"
    fresh = await env.tts.refresh(http, cast(str, grant.refresh_token))
    await env.tts.identify(http, fresh)


async def test_refresh_token_expires(env: Env, http: httpx2.AsyncClient) -> None:
    env.sim.lifetimes.refresh = 120
    grant = await env.connect(http)
    env.sim.clock.advance(121)
    with pytest.raises(AuthorizationDead) as caught:
        await env.tts.refresh(http, cast(str, grant.refresh_token))
    assert caught.value.code == "36004001"


async def test_never_expiring_lifetimes_become_a_century(
    env: Env, http: httpx2.AsyncClient
) -> None:
    env.sim.lifetimes.access = None
    grant = await env.connect(http)
    assert grant.access_expires_at is not None
    assert grant.access_expires_at - env.sim.clock() > timedelta(days=365 * 99)


async def test_legacy_authorization_page(env: Env, http: httpx2.AsyncClient) -> None:
    # The platform still serves the older page addressed by app key; shopkeys no longer sends
    # merchants there (it needs a service id), but an SDK that does still works here.
    legacy = env.provider(service_id=None)
    with pytest.raises(ConfigurationError, match="service id"):
        legacy.authorization_url("old", env.redirect_uri)
    query = urlencode({"app_key": legacy.credentials.client_id, "state": "old"})
    url = f"{env.base}/oauth/authorize?{query}"
    params = callback_params(await press(http, url))
    grant = await legacy.exchange_code(http, params["code"], env.redirect_uri)
    assert grant.account_id


@pytest.mark.parametrize(
    "query",
    [
        {"service_id": "999", "state": "x"},
        {"state": "x"},
    ],
)
async def test_unknown_service_gets_an_error_page(
    env: Env, http: httpx2.AsyncClient, query: dict[str, str]
) -> None:
    url = f"{env.base}/open/authorize?{urlencode(query)}"
    answer = await http.get(url)
    assert answer.status_code == 400 and "does not exist" in answer.text
    with pytest.raises(BrowserError):
        await press(http, url)
    wrong = await http.get(f"{env.base}/oauth/authorize?app_key=nope&state=x")
    assert wrong.status_code == 400


async def test_redirect_uri_is_ignored_code_goes_only_to_the_registered_one(
    env: Env, http: httpx2.AsyncClient
) -> None:
    url = env.tts.authorization_url("s", env.redirect_uri)
    url += "&" + urlencode({"redirect_uri": "https://evil.example/steal"})
    location = await press(http, url)
    assert location.startswith(env.redirect_uri + "?")
    assert "evil" not in location


async def test_deny(env: Env, http: httpx2.AsyncClient) -> None:
    url = env.tts.authorization_url("st4te", env.redirect_uri)
    location = await press(http, url, button="Deny")
    assert location.startswith(env.redirect_uri + "?")
    params = callback_params(location)
    assert params["error"] == "access_denied" and params["state"] == "st4te"
    assert "code" not in params
    env.sim.decline_callback = False
    with pytest.raises(BrowserError):
        await press(http, url, button="Deny")


# -- fault injection --

FAULTS = [
    (Fault(status=503), TemporaryFailure, None),
    (Fault(status=429, retry_after=7), RateLimited, 7),
    (Fault(malformed=True), ProtocolError, None),
    (Fault(drop=True), TemporaryFailure, None),
]


@pytest.mark.parametrize(("fault", "kind", "retry_after"), FAULTS)
@pytest.mark.parametrize("endpoint", ["token", "refresh"])
async def test_faults_on_token_endpoints(
    env: Env,
    http: httpx2.AsyncClient,
    endpoint: str,
    fault: Fault,
    kind: type[ProviderError],
    retry_after: float | None,
) -> None:
    env.sim.faults.set(endpoint, replace(fault))
    with pytest.raises(kind) as caught:
        if endpoint == "token":
            await env.tts.exchange_code(http, "TTP_any", env.redirect_uri)
        else:
            await env.tts.refresh(http, "ROW_any")
    assert caught.value.endpoint == endpoint
    if retry_after is not None:
        assert cast(RateLimited, caught.value).retry_after == retry_after


PLATFORM_ERRORS = [
    ("36004004", AuthorizationDead),
    ("36004001", AuthorizationDead),
    ("36004005", AuthorizationDead),
    ("105001", AuthorizationDead),
    ("105002", AccessExpired),
    ("105005", RequestRejected),
    ("106001", RequestRejected),
    ("36009004", RequestRejected),
    ("36009002", RateLimited),
    ("36009003", TemporaryFailure),
]


@pytest.mark.parametrize(("code", "kind"), PLATFORM_ERRORS)
async def test_platform_errors_reach_their_class(
    env: Env, http: httpx2.AsyncClient, code: str, kind: type[ProviderError]
) -> None:
    env.sim.faults.set("refresh", Fault(platform_error=code))
    with pytest.raises(kind) as caught:
        await env.tts.refresh(http, "ROW_any")
    assert type(caught.value) is kind and caught.value.code == code


async def test_faults_on_shops(env: Env, http: httpx2.AsyncClient) -> None:
    grant = await env.connect(http)
    env.sim.faults.set("shops", Fault(platform_error="105005", times=1))
    with pytest.raises(RequestRejected):
        await env.tts.identify(http, grant)
    env.sim.faults.set("shops", Fault(malformed=True, times=1))
    with pytest.raises(ProtocolError):
        await env.tts.identify(http, grant)
    env.sim.faults.set("authorize", Fault(status=502, times=1))
    with pytest.raises(BrowserError):
        await press(http, env.tts.authorization_url("s", env.redirect_uri))
    assert (await env.tts.identify(http, grant)).shops


async def test_unknown_platform_error_code_is_an_internal_error(env: Env) -> None:
    answer = env.sim.platform_error("not-a-number")
    assert json.loads(bytes(answer.body))["code"] == 36009003


# -- raw HTTP, as a platform SDK pointed at the mount would talk --


async def raw_shops(
    env: Env,
    http: httpx2.AsyncClient,
    token: str,
    *,
    path: str | None = None,
    secret: str | None = None,
    timestamp: int | None = None,
    app_key: str | None = None,
) -> dict[str, Any]:
    mounted = httpx2.URL(env.base + SHOPS).path
    params = {
        "app_key": app_key or env.sim.app.client_id,
        "timestamp": str(timestamp if timestamp is not None else int(env.sim.clock().timestamp())),
    }
    params["sign"] = sign(secret or env.sim.app.client_secret, path or mounted, params)
    answer = await http.get(
        env.base + SHOPS, params=params, headers={"x-tts-access-token": token} if token else {}
    )
    body: dict[str, Any] = answer.json()
    body["status"] = answer.status_code
    return body


async def test_raw_sdk_style_calls(env: Env, http: httpx2.AsyncClient) -> None:
    app = env.sim.app
    location = await press(http, f"{env.base}/open/authorize?service_id={app.service_id}&state=r")
    code = callback_params(location)["code"]
    query = {
        "app_key": app.client_id,
        "app_secret": app.client_secret,
        "auth_code": code,
        "grant_type": "authorized_code",
    }
    answer = await http.get(f"{env.base}/api/v2/token/get", params=query)
    body = answer.json()
    assert answer.status_code == 200 and body["code"] == 0 and body["message"] == "success"
    data = body["data"]
    assert set(data) == {
        "access_token",
        "access_token_expire_in",
        "refresh_token",
        "refresh_token_expire_in",
        "open_id",
        "seller_name",
        "seller_base_region",
        "user_type",
        "granted_scopes",
    }
    now = env.sim.clock().timestamp()
    # Absolute Unix seconds: issue time + 7 days, not 604800.
    assert data["access_token_expire_in"] == now + 604800
    token = data["access_token"]

    # Signed over the mounted path (what an SDK pointed at the mount sends) or the platform's own.
    assert (await raw_shops(env, http, token))["code"] == 0
    assert (await raw_shops(env, http, token, path=SHOPS))["code"] == 0
    bad_path = await raw_shops(env, http, token, path="/elsewhere" + SHOPS)
    assert (bad_path["code"], bad_path["status"]) == (106001, 401)
    assert (await raw_shops(env, http, token, secret="wrong"))["code"] == 106001
    old = int(now) - 1000
    assert (await raw_shops(env, http, token, timestamp=old))["code"] == 36009004
    assert (await raw_shops(env, http, token, app_key="wrong"))["code"] == 36009004
    assert (await raw_shops(env, http, ""))["code"] == 36009004
    assert (await raw_shops(env, http, "ROW_unknown"))["code"] == 105001
    not_a_time = await http.get(
        env.base + SHOPS, params={"app_key": app.client_id, "timestamp": "x"}
    )
    assert not_a_time.json()["code"] == 36009004

    # The Node SDK's refresh call sends grant_type=authorized_code; the platform takes it.
    refresh = {
        "app_key": app.client_id,
        "app_secret": app.client_secret,
        "refresh_token": data["refresh_token"],
        "grant_type": "authorized_code",
    }
    answer = await http.get(f"{env.base}/api/v2/token/refresh", params=refresh)
    assert answer.json()["code"] == 0
    wrong_grant = {
        **refresh,
        "refresh_token": answer.json()["data"]["refresh_token"],
        "grant_type": "x",
    }
    answer = await http.get(f"{env.base}/api/v2/token/refresh", params=wrong_grant)
    assert answer.json()["code"] == 36009004
    answer = await http.get(f"{env.base}/api/v2/token/get", params={**query, "grant_type": "x"})
    assert answer.json()["code"] == 36009004
    # Token endpoints take GET only.
    assert (await http.post(f"{env.base}/api/v2/token/get", params=query)).status_code == 405


# -- webhooks --


async def test_webhooks_verify_and_deauthorization_kills_tokens(
    env: Env, http: httpx2.AsyncClient
) -> None:
    grant = await env.connect(http, "leaving-store")
    shop_id = (await env.tts.identify(http, grant)).shops[0].id

    headers, body = env.sim.webhook({"type": 7, "shop_id": shop_id, "data": {"days": 3}})
    assert env.tts.verify_webhook(headers, body)
    assert not env.tts.verify_webhook(headers, body.replace(b"3", b"4"))
    message = json.loads(body)
    assert message["type"] == 7 and message["shop_id"] == shop_id
    assert isinstance(message["timestamp"], int)
    # An expiry notice changes nothing.
    await env.tts.identify(http, grant)

    headers, body = env.sim.webhook({"type": 6, "shop_id": shop_id})
    assert env.tts.verify_webhook(headers, body)
    with pytest.raises(AuthorizationDead) as caught:
        await env.tts.refresh(http, cast(str, grant.refresh_token))
    assert caught.value.code == "36004005"
    with pytest.raises(AuthorizationDead) as caught:
        await env.tts.identify(http, grant)
    assert caught.value.code == "105001"
    # Reconnecting gives a working authorization again, for the same account.
    back = await env.connect(http, "leaving-store")
    assert back.account_id == grant.account_id
    await env.tts.identify(http, back)


async def test_control_route_sends_a_signed_webhook(env: Env, http: httpx2.AsyncClient) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def receive(scope: Any, receive_: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive_())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        chunks = b""
        while True:
            message = await receive_()
            chunks += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append(({k.decode(): v.decode() for k, v in scope["headers"]}, chunks))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    from tests.live import serve

    with serve(receive) as url:
        answer = await http.post(
            env.base + "/_sandbox/webhooks",
            json={"url": url + "/hook", "payload": {"type": 7, "shop_id": "1"}},
        )
    assert answer.json() == {"delivered": True, "status": 204}
    headers, body = received[0]
    assert env.tts.verify_webhook(headers, body)


# -- secrecy --


async def test_no_secret_in_logs(
    env: Env, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # The scripted browser's own traffic is not the provider's: httpcore2.http11 logs the
    # redirect's Location header (with the code) at DEBUG, beyond the redacting filter's reach.
    params = await env.callback(http)
    caplog.set_level(logging.DEBUG)
    grant = await env.tts.exchange_code(http, params["code"], env.redirect_uri)
    refreshed = await env.tts.refresh(http, cast(str, grant.refresh_token))
    await env.tts.identify(http, refreshed)
    with pytest.raises(AuthorizationDead) as caught:
        await env.tts.refresh(http, cast(str, grant.refresh_token))
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "token/refresh" in logged
    secrets = [
        env.sim.app.client_secret,
        params["code"],
        cast(str, grant.refresh_token),
        cast(str, refreshed.refresh_token),
        grant.access_token,
        refreshed.access_token,
    ]
    for secret in secrets:
        assert secret not in logged
        assert secret not in str(caught.value)
        assert secret not in repr(grant) + repr(refreshed) + repr(env.tts)


# -- shop-level and shopless business calls, raw, signed with the provider's own `sign` --

ORDERS = "/order/202309/orders"
SEARCH = "/product/202309/products/search"
ACTIVE_SHOPS = "/seller/202309/shops"


async def call(
    env: Env,
    http: httpx2.AsyncClient,
    token: str,
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    signed_body: bytes | None = None,
    secret: str | None = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """A business call as a signing proxy sends it: signed over the mounted path, the query and
    (for a POST) the body; `signed_body` signs other bytes than the ones sent."""
    params = {
        "app_key": env.sim.app.client_id,
        "timestamp": str(int(env.sim.clock().timestamp())),
        **(query or {}),
    }
    sent = body or b""
    covered = sent if signed_body is None else signed_body
    mounted = httpx2.URL(env.base + path).path
    params["sign"] = sign(
        secret or env.sim.app.client_secret, mounted, params, covered if method == "POST" else b""
    )
    headers = {"x-tts-access-token": token}
    if method == "POST":
        headers["content-type"] = content_type
    answer = await http.request(
        method, env.base + path, params=params, content=sent or None, headers=headers
    )
    result: dict[str, Any] = answer.json()
    result["status"] = answer.status_code
    return result


async def shop_of(env: Env, http: httpx2.AsyncClient, login: str) -> tuple[str, str]:
    """A fresh access token for `login` and the cipher of its shop."""
    grant = await env.connect(http, login)
    (shop,) = (await env.tts.identify(http, grant)).shops
    return grant.access_token, str(shop.extra["cipher"])


async def test_order_detail_answers_for_the_tokens_shop(env: Env, http: httpx2.AsyncClient) -> None:
    token, cipher = await shop_of(env, http, "order-shop")
    ids = "576461413038785752,576461413038785753"
    body = await call(env, http, token, "GET", ORDERS, {"shop_cipher": cipher, "ids": ids})
    assert (body["code"], body["message"], body["status"]) == (0, "success", 200)
    assert body["request_id"]
    orders = body["data"]["orders"]
    assert [o["id"] for o in orders] == ids.split(",")
    first = orders[0]
    assert first["status"] == "AWAITING_SHIPMENT" and first["line_items"]
    payment = first["payment"]
    subtotal = sum(float(item["sale_price"]) for item in first["line_items"])
    assert float(payment["sub_total"]) == pytest.approx(subtotal)
    assert float(payment["total_amount"]) == pytest.approx(
        subtotal + float(payment["shipping_fee"])
    )
    again = await call(env, http, token, "GET", ORDERS, {"shop_cipher": cipher, "ids": ids})
    assert again["data"] == body["data"]


async def test_search_products_pages_through_the_catalogue(
    env: Env, http: httpx2.AsyncClient
) -> None:
    token, cipher = await shop_of(env, http, "catalogue-shop")
    seen: list[str] = []
    page_token = ""
    for _ in range(10):
        query = {"shop_cipher": cipher, "page_size": "20"}
        if page_token:
            query["page_token"] = page_token
        body = await call(env, http, token, "POST", SEARCH, query, b'{"status":"ACTIVATE"}')
        assert body["code"] == 0, body
        data = body["data"]
        assert data["total_count"] == env.sim.products_per_shop
        seen += [p["id"] for p in data["products"]]
        page_token = data["next_page_token"]
        if not page_token:
            break
    assert len(seen) == len(set(seen)) == env.sim.products_per_shop
    product = data["products"][0]
    assert product["status"] == "ACTIVATE" and product["skus"][0]["price"]["currency"]

    # An empty body is no filter; a status no simulated product has finds none.
    query = {"shop_cipher": cipher, "page_size": "100"}
    everything = await call(env, http, token, "POST", SEARCH, query)
    assert len(everything["data"]["products"]) == env.sim.products_per_shop
    assert everything["data"]["next_page_token"] == ""
    deleted = await call(env, http, token, "POST", SEARCH, query, b'{"status":"DELETED"}')
    assert deleted["data"] == {"products": [], "next_page_token": "", "total_count": 0}


async def test_shop_cipher_must_name_a_shop_of_the_authorization(
    env: Env, http: httpx2.AsyncClient
) -> None:
    token, cipher = await shop_of(env, http, "cipher-owner")
    _, foreign = await shop_of(env, http, "someone-else")
    order = {"ids": "576461413038785752"}
    page = {"page_size": "10"}
    for path, method, query in ((ORDERS, "GET", order), (SEARCH, "POST", page)):
        missing = await call(env, http, token, method, path, query)
        assert (missing["code"], missing["status"]) == (106013, 200)
        assert missing["data"] is None and missing["request_id"]
        for wrong in (foreign, "ROW_made-up", ""):
            body = await call(env, http, token, method, path, {**query, "shop_cipher": wrong})
            assert body["code"] == (106013 if wrong == "" else 106011)
        assert (await call(env, http, token, method, path, {**query, "shop_cipher": cipher}))[
            "code"
        ] == 0


async def test_shopless_calls_refuse_a_shop_cipher(env: Env, http: httpx2.AsyncClient) -> None:
    token, cipher = await shop_of(env, http, "shopless")
    for path in (SHOPS, ACTIVE_SHOPS):
        body = await call(env, http, token, "GET", path, {"shop_cipher": cipher})
        assert (body["code"], body["status"]) == (36009004, 200)
        assert "shop_cipher is not allowed" in body["message"]
        plain = await call(env, http, token, "GET", path)
        assert plain["code"] == 0
    active = (await call(env, http, token, "GET", ACTIVE_SHOPS))["data"]["shops"]
    (authorized,) = (await call(env, http, token, "GET", SHOPS))["data"]["shops"]
    assert active == [{"id": authorized["id"], "region": authorized["region"]}]


async def test_the_signature_covers_the_body(env: Env, http: httpx2.AsyncClient) -> None:
    token, cipher = await shop_of(env, http, "signed-body")
    query = {"shop_cipher": cipher, "page_size": "5"}
    wanted = b'{"status":"ACTIVATE"}'
    assert (await call(env, http, token, "POST", SEARCH, query, wanted))["code"] == 0
    tampered = await call(
        env, http, token, "POST", SEARCH, query, b'{"status":"DELETED"}', signed_body=wanted
    )
    assert (tampered["code"], tampered["status"]) == (106001, 401)
    unsigned = await call(env, http, token, "POST", SEARCH, query, wanted, signed_body=b"")
    assert unsigned["code"] == 106001
    for path, method, extra in (
        (ORDERS, "GET", {"ids": "1"}),
        (SEARCH, "POST", {"page_size": "5"}),
    ):
        forged = await call(
            env, http, token, method, path, {"shop_cipher": cipher, **extra}, secret="not-it"
        )
        assert (forged["code"], forged["status"]) == (106001, 401)


async def test_expired_and_revoked_tokens_are_refused_on_shop_calls(
    env: Env, http: httpx2.AsyncClient
) -> None:
    env.sim.lifetimes.access = 60
    token, cipher = await shop_of(env, http, "expiring-shop")
    env.sim.clock.advance(61)
    orders = await call(env, http, token, "GET", ORDERS, {"shop_cipher": cipher, "ids": "1"})
    assert orders["code"] == 105002
    query = {"shop_cipher": cipher, "page_size": "5"}
    assert (await call(env, http, token, "POST", SEARCH, query))["code"] == 105002
    ids = {"shop_cipher": cipher, "ids": "1"}
    assert (await call(env, http, "ROW_nobody", "GET", ORDERS, ids))["code"] == 105001


@pytest.mark.parametrize(
    ("path", "method", "query", "body", "content_type"),
    [
        (ORDERS, "GET", {}, None, ""),
        (ORDERS, "GET", {"ids": ",".join(str(n) for n in range(51))}, None, ""),
        (ORDERS, "GET", {"ids": "12,abc"}, None, ""),
        (SEARCH, "POST", {}, b"{}", "application/json"),
        (SEARCH, "POST", {"page_size": "0"}, b"{}", "application/json"),
        (SEARCH, "POST", {"page_size": "101"}, b"{}", "application/json"),
        (SEARCH, "POST", {"page_size": "5", "page_token": "nope"}, b"{}", "application/json"),
        (SEARCH, "POST", {"page_size": "5"}, b"[1]", "application/json"),
        (SEARCH, "POST", {"page_size": "5"}, b"{oops", "application/json"),
        (SEARCH, "POST", {"page_size": "5"}, b'{"status":"SOLD"}', "application/json"),
        (SEARCH, "POST", {"page_size": "5"}, b"status=ALL", "application/x-www-form-urlencoded"),
    ],
)
async def test_invalid_business_parameters(
    env: Env,
    http: httpx2.AsyncClient,
    path: str,
    method: str,
    query: dict[str, str],
    body: bytes | None,
    content_type: str,
) -> None:
    token, cipher = await shop_of(env, http, "picky-shop")
    answer = await call(
        env,
        http,
        token,
        method,
        path,
        {"shop_cipher": cipher, **query},
        body,
        content_type=content_type or "application/json",
    )
    assert (answer["code"], answer["status"]) == (36009004, 200)
    assert answer["message"].startswith("Invalid request.")


async def test_faults_per_business_endpoint(env: Env, http: httpx2.AsyncClient) -> None:
    token, cipher = await shop_of(env, http, "faulty-shop")
    env.sim.faults.set("orders", Fault(status=429, retry_after=5, times=1))
    answer = await http.get(env.base + ORDERS, params={"shop_cipher": cipher, "ids": "1"})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "5"
    # Only that endpoint: the search still answers, and the fault fired once.
    query = {"shop_cipher": cipher, "page_size": "5"}
    assert (await call(env, http, token, "POST", SEARCH, query))["code"] == 0
    ids = {"shop_cipher": cipher, "ids": "1"}
    assert (await call(env, http, token, "GET", ORDERS, ids))["code"] == 0
    env.sim.faults.set("products", Fault(platform_error="36009002", times=1))
    limited = await call(env, http, token, "POST", SEARCH, query)
    assert limited["code"] == 36009002
    assert env.sim.calls["orders"] >= 2 and env.sim.calls["products"] >= 2
