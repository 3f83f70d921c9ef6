"""The Ecwid simulator over a real socket, driven by shopkeys' provider, raw HTTP and Authlib."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from shopkeys.credentials import AppCredentials
from shopkeys.errors import (
    AuthorizationDead,
    NotSupported,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Grant
from shopkeys.providers.ecwid import Ecwid
from shopkeys.sandbox.browser import BrowserError, callback_params, press
from shopkeys.sandbox.core import Fault
from shopkeys.sandbox.ecwid import EcwidSimulator, file_chunks
from tests.conftest import LiveSandbox


@pytest.fixture
def sim(live_sandbox: LiveSandbox) -> Iterator[EcwidSimulator]:
    simulator = live_sandbox.simulator("ecwid")
    assert isinstance(simulator, EcwidSimulator)
    lifetimes = (simulator.lifetimes.code, simulator.lifetimes.access)
    yield simulator
    # The sandbox's reset restores faults and the clock; these are ours to put back.
    simulator.lifetimes.code, simulator.lifetimes.access = lifetimes
    simulator.__dict__.pop("requests_per_minute", None)


@pytest.fixture
def ecwid(live_sandbox: LiveSandbox, sim: EcwidSimulator) -> Ecwid:
    provider = live_sandbox.provider("ecwid")
    assert isinstance(provider, Ecwid)
    return provider


async def authorize(
    live_sandbox: LiveSandbox,
    ecwid: Ecwid,
    http: httpx2.AsyncClient,
    *,
    scopes: list[str] | None = None,
    login: str = "demo-store",
) -> dict[str, str]:
    url = ecwid.authorization_url("state-123", live_sandbox.redirect_uri("ecwid"), scopes)
    location = await press(http, url, login=login)
    assert location.startswith(live_sandbox.redirect_uri("ecwid") + "?")
    return callback_params(location)


async def connect(
    live_sandbox: LiveSandbox,
    ecwid: Ecwid,
    http: httpx2.AsyncClient,
    **kwargs: object,
) -> tuple[Grant, dict[str, str]]:
    params = await authorize(live_sandbox, ecwid, http, **kwargs)  # type: ignore[arg-type]
    code = params.pop("code")
    grant = await ecwid.exchange_code(http, code, live_sandbox.redirect_uri("ecwid"), **params)
    return grant, {**params, "code": code}


async def exchange(
    live_sandbox: LiveSandbox,
    ecwid: Ecwid,
    http: httpx2.AsyncClient,
    params: dict[str, str],
    redirect_uri: str | None = None,
) -> Grant:
    """The callback's code exchanged as shopkeys does it: the redirect URI and the store id."""
    redirect_uri = redirect_uri or live_sandbox.redirect_uri("ecwid")
    return await ecwid.exchange_code(
        http, params["code"], redirect_uri, store_id=params["store_id"]
    )


async def test_full_flow_reuse_disables_the_first_token(
    live_sandbox: LiveSandbox, ecwid: Ecwid, http: httpx2.AsyncClient
) -> None:
    params = await authorize(live_sandbox, ecwid, http)
    assert set(params) == {"code", "store_id", "state"}
    assert params["state"] == "state-123" and params["store_id"].isdigit()
    redirect = live_sandbox.redirect_uri("ecwid")
    grant = await ecwid.exchange_code(
        http, params["code"], redirect, store_id=params["store_id"], state=params["state"]
    )
    assert grant.account_id == params["store_id"]
    assert grant.access_token.startswith("secret_")
    assert grant.refresh_token is None and grant.access_expires_at is None
    assert grant.scopes == ["read_store_profile", "read_catalog", "read_orders"]
    assert grant.raw["store_id"] == int(params["store_id"])

    account = await ecwid.identify(http, grant)
    assert account.account_id == grant.account_id
    assert account.name == "Demo Store"
    assert [shop.id for shop in account.shops] == [grant.account_id]

    with pytest.raises(NotSupported):
        await ecwid.refresh(http, "no-such-thing")

    # Exchanging the code again fails AND kills the token the first exchange gave.
    with pytest.raises(AuthorizationDead) as reused:
        await ecwid.exchange_code(http, params["code"], redirect, store_id=params["store_id"])
    assert reused.value.code == "invalid_grant"
    with pytest.raises(AuthorizationDead) as dead:
        await ecwid.identify(http, grant)
    assert dead.value.code == "INVALID_API_TOKEN" and dead.value.status == 403


async def test_same_login_same_store_and_reconnect_gives_a_working_token(
    live_sandbox: LiveSandbox, ecwid: Ecwid, http: httpx2.AsyncClient
) -> None:
    first, _ = await connect(live_sandbox, ecwid, http, login="acme-goods")
    second, _ = await connect(live_sandbox, ecwid, http, login="acme-goods")
    other, _ = await connect(live_sandbox, ecwid, http, login="other-shop")
    assert first.account_id == second.account_id != other.account_id
    assert first.access_token != second.access_token
    assert (await ecwid.identify(http, second)).name == "Acme Goods"


async def test_expired_code_is_rejected(
    live_sandbox: LiveSandbox, ecwid: Ecwid, sim: EcwidSimulator, http: httpx2.AsyncClient
) -> None:
    params = await authorize(live_sandbox, ecwid, http)
    sim.clock.advance(sim.lifetimes.code + 1)
    with pytest.raises(AuthorizationDead):
        await exchange(live_sandbox, ecwid, http, params)


async def test_short_code_lifetime(
    live_sandbox: LiveSandbox, ecwid: Ecwid, sim: EcwidSimulator, http: httpx2.AsyncClient
) -> None:
    sim.lifetimes.code = 5
    params = await authorize(live_sandbox, ecwid, http)
    sim.clock.advance(4)
    grant = await exchange(live_sandbox, ecwid, http, params)
    assert grant.account_id == params["store_id"]


async def test_unknown_code_and_wrong_redirect_uri_are_rejected(
    live_sandbox: LiveSandbox, ecwid: Ecwid, http: httpx2.AsyncClient
) -> None:
    with pytest.raises(AuthorizationDead):
        await ecwid.exchange_code(
            http, "made-up", live_sandbox.redirect_uri("ecwid"), store_id="10000001"
        )
    params = await authorize(live_sandbox, ecwid, http)
    with pytest.raises(AuthorizationDead, match="redirect_uri"):
        await exchange(
            live_sandbox, ecwid, http, params, redirect_uri="http://shopkeys.test/elsewhere"
        )


async def test_bad_client_secret_is_rejected(
    live_sandbox: LiveSandbox, ecwid: Ecwid, http: httpx2.AsyncClient
) -> None:
    params = await authorize(live_sandbox, ecwid, http)
    wrong = Ecwid(
        AppCredentials(ecwid.credentials.client_id, "not-the-secret"),
        base_url=live_sandbox.base_url("ecwid"),
    )
    with pytest.raises(RequestRejected) as caught:
        await exchange(live_sandbox, wrong, http, params)
    assert caught.value.code == "invalid_client" and caught.value.status == 401
    # The code was not spent by the refused attempt.
    grant = await exchange(live_sandbox, ecwid, http, params)
    assert grant.account_id == params["store_id"]


async def test_deny_returns_access_denied(
    live_sandbox: LiveSandbox, ecwid: Ecwid, http: httpx2.AsyncClient
) -> None:
    url = ecwid.authorization_url("st", live_sandbox.redirect_uri("ecwid"))
    location = await press(http, url, button="Deny")
    assert location.startswith(live_sandbox.redirect_uri("ecwid") + "?")
    assert callback_params(location) == {"error": "access_denied", "state": "st"}
    with pytest.raises(AuthorizationDead):
        await ecwid.exchange_code(
            http, "", live_sandbox.redirect_uri("ecwid"), error="access_denied"
        )


@pytest.mark.parametrize(
    "change",
    [
        {"redirect_uri": "http://evil.test/oauth/callback/ecwid"},
        {"client_id": "someone-else"},
        {"response_type": "token"},
        {"scope": "read_store_profile read_everything"},
    ],
)
async def test_bad_authorize_requests_get_an_error_page_and_no_redirect(
    live_sandbox: LiveSandbox, ecwid: Ecwid, http: httpx2.AsyncClient, change: dict[str, str]
) -> None:
    url = ecwid.authorization_url("st", live_sandbox.redirect_uri("ecwid"))
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()} | change
    page = await http.get(url.split("?")[0], params=query)
    assert page.status_code == 400 and "location" not in page.headers
    with pytest.raises(BrowserError):
        await press(http, str(page.url))
    posted = await http.post(str(page.url), data={"decision": "authorize", "login": "x"})
    assert posted.status_code == 400 and "location" not in posted.headers


async def test_raw_http_as_an_sdk_would(
    live_sandbox: LiveSandbox, ecwid: Ecwid, http: httpx2.AsyncClient
) -> None:
    base = live_sandbox.base_url("ecwid")
    assert urlsplit(base).path == "/sandbox/ecwid"
    redirect = live_sandbox.redirect_uri("ecwid")
    app = live_sandbox.simulator("ecwid").app
    params = await authorize(live_sandbox, ecwid, http, scopes=["read_catalog"])
    form = {
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "code": params["code"],
        "redirect_uri": redirect,
        "grant_type": "authorization_code",
    }
    # The path without the store id is retired, whatever the method.
    for method in ("GET", "POST"):
        retired = await http.request(method, f"{base}/api/oauth/token", data=form)
        assert retired.status_code == 410 and retired.json()["error"] == "invalid_request"
        assert "{store_id}" in retired.json()["error_description"]
    token_url = f"{base}/api/oauth/token/{params['store_id']}"
    # GET is refused, and so are parameters in the query or a JSON body.
    refused = await http.get(token_url, params=form)
    assert refused.status_code == 405 and refused.json()["error"] == "method_not_allowed"
    as_query = await http.post(token_url, params=form)
    assert as_query.status_code == 400 and as_query.json()["error"] == "invalid_request"
    as_json = await http.post(token_url, json=form)
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    # HTTP Basic alone (client_secret_basic) leaves the required body parameters missing.
    basic = await http.post(
        token_url,
        data={k: v for k, v in form.items() if k not in ("client_id", "client_secret")},
        auth=(app.client_id, app.client_secret),
    )
    assert basic.status_code == 400 and basic.json()["error"] == "invalid_request"
    wrong_grant = await http.post(token_url, data={**form, "grant_type": "x"})
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    # Another store's id is refused, the right one works.
    other = await http.post(f"{base}/api/oauth/token/1", data=form)
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    params = await authorize(live_sandbox, ecwid, http, scopes=["read_catalog"])
    form["code"] = params["code"]
    token = await http.post(f"{base}/api/oauth/token/{params['store_id']}", data=form)
    assert token.status_code == 200
    body = token.json()
    assert body["token_type"].lower() == "bearer" and isinstance(body["store_id"], int)
    assert body["scope"] == "read_store_profile read_catalog" and "public_token" not in body

    store = body["store_id"]
    secret = body["access_token"]
    profile = await http.get(
        f"{base}/api/v3/{store}/profile", headers={"Authorization": f"Bearer {secret}"}
    )
    assert profile.status_code == 200 and profile.json()["generalInfo"]["storeId"] == store
    # The token as a query parameter no longer works (Ecwid, 2025-03-20).
    in_query = await http.get(f"{base}/api/v3/{store}/profile", params={"token": secret})
    assert in_query.status_code == 403
    assert in_query.json() == {
        "errorMessage": "Invalid access token in the request.",
        "errorCode": "INVALID_API_TOKEN",
    }
    products = await http.get(
        f"{base}/api/v3/{store}/products", headers={"Authorization": f"Bearer {secret}"}
    )
    assert products.status_code == 200 and products.json()["items"] == []
    orders = await http.get(
        f"{base}/api/v3/{store}/orders", headers={"Authorization": f"Bearer {secret}"}
    )
    assert orders.status_code == 403 and orders.json()["errorCode"] == "INSUFFICIENT_APP_SCOPE"
    assert type(ecwid.classify(orders, "orders")) is RequestRejected
    missing = await http.get(
        f"{base}/api/v3/999/profile", headers={"Authorization": f"Bearer {secret}"}
    )
    assert missing.status_code == 404 and missing.json()["errorCode"] == "STORE_NOT_FOUND"
    assert type(ecwid.classify(missing, "profile")) is AuthorizationDead


async def test_public_token_only_with_public_storefront(
    live_sandbox: LiveSandbox, ecwid: Ecwid, http: httpx2.AsyncClient
) -> None:
    params = await authorize(live_sandbox, ecwid, http, scopes=["public_storefront"])
    app = live_sandbox.simulator("ecwid").app
    base = live_sandbox.base_url("ecwid")
    body = (
        await http.post(
            f"{base}/api/oauth/token/{params['store_id']}",
            data={
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "code": params["code"],
                "redirect_uri": live_sandbox.redirect_uri("ecwid"),
                "grant_type": "authorization_code",
            },
        )
    ).json()
    public = body["public_token"]
    assert public.startswith("public_")
    store = body["store_id"]
    limited = await http.get(
        f"{base}/api/v3/{store}/profile", headers={"Authorization": f"Bearer {public}"}
    )
    assert limited.status_code == 200 and "account" not in limited.json()
    catalog = await http.get(
        f"{base}/api/v3/{store}/products", headers={"Authorization": f"Bearer {public}"}
    )
    assert catalog.status_code == 403

    grant, _ = await connect(live_sandbox, ecwid, http, scopes=["public_storefront"])
    assert "public_token" not in grant.raw and "access_token" not in grant.raw
    assert "public_storefront" in grant.scopes


async def test_tokens_do_not_expire_but_die_on_uninstall(
    live_sandbox: LiveSandbox, ecwid: Ecwid, sim: EcwidSimulator, http: httpx2.AsyncClient
) -> None:
    grant, _ = await connect(live_sandbox, ecwid, http)
    assert sim.lifetimes.access is None and sim.lifetimes.refresh is None
    sim.clock.advance(10 * 365 * 86400)
    assert (await ecwid.identify(http, grant)).account_id == grant.account_id
    sim.uninstall(grant.account_id)
    with pytest.raises(AuthorizationDead):
        await ecwid.identify(http, grant)


async def test_a_configured_access_lifetime_expires_tokens(
    live_sandbox: LiveSandbox, ecwid: Ecwid, sim: EcwidSimulator, http: httpx2.AsyncClient
) -> None:
    sim.lifetimes.access = 60
    grant, _ = await connect(live_sandbox, ecwid, http)
    sim.clock.advance(59)
    await ecwid.identify(http, grant)
    sim.clock.advance(2)
    with pytest.raises(AuthorizationDead):
        await ecwid.identify(http, grant)


async def test_rate_limit_per_token_by_the_simulator_clock(
    live_sandbox: LiveSandbox, ecwid: Ecwid, sim: EcwidSimulator, http: httpx2.AsyncClient
) -> None:
    assert EcwidSimulator.requests_per_minute == 600
    sim.requests_per_minute = 5
    grant, _ = await connect(live_sandbox, ecwid, http)
    other, _ = await connect(live_sandbox, ecwid, http)
    for _ in range(5):
        await ecwid.identify(http, grant)
        sim.clock.advance(1)
    with pytest.raises(RateLimited) as limited:
        await ecwid.identify(http, grant)
    assert limited.value.code == "RATE_LIMITED" and limited.value.retry_after == 55
    await ecwid.identify(http, other)  # another token has its own budget
    sim.clock.advance(55)
    await ecwid.identify(http, grant)


async def test_webhooks_are_signed_as_ecwid_signs_them(ecwid: Ecwid, sim: EcwidSimulator) -> None:
    headers, body = sim.webhook({"eventType": "application.uninstalled", "storeId": 1003})
    assert ecwid.verify_webhook(headers, body)
    assert not ecwid.verify_webhook(headers, body.replace(b'"eventId": "', b'"eventId": "x'))
    assert not ecwid.verify_webhook({}, body)


# -- fault injection ----------------------------------------------------------------------------

TOKEN_FAULTS = [
    (Fault(status=500), TemporaryFailure),
    (Fault(status=503), TemporaryFailure),
    (Fault(status=429, retry_after=7), RateLimited),
    (Fault(malformed=True), ProtocolError),
    (Fault(drop=True), TemporaryFailure),
    (Fault(status=400), RequestRejected),
    (Fault(platform_error="invalid_grant"), AuthorizationDead),
    (Fault(platform_error="invalid_client"), RequestRejected),
    (Fault(platform_error="invalid_request"), RequestRejected),
    (Fault(platform_error="unsupported_grant_type"), RequestRejected),
    (Fault(platform_error="method_not_allowed"), RequestRejected),
    (Fault(platform_error="server_error"), TemporaryFailure),
]


@pytest.mark.parametrize(("fault", "kind"), TOKEN_FAULTS)
async def test_token_faults(
    live_sandbox: LiveSandbox,
    ecwid: Ecwid,
    sim: EcwidSimulator,
    http: httpx2.AsyncClient,
    fault: Fault,
    kind: type[ProviderError],
) -> None:
    params = await authorize(live_sandbox, ecwid, http)
    sim.faults.set("token", fault)
    with pytest.raises(kind) as caught:
        await exchange(live_sandbox, ecwid, http, params)
    assert type(caught.value) is kind
    if fault.retry_after is not None:
        assert isinstance(caught.value, RateLimited) and caught.value.retry_after == 7
    assert params["code"] not in str(caught.value)


PROFILE_FAULTS = [
    (Fault(platform_error="INVALID_API_TOKEN"), AuthorizationDead),
    (Fault(platform_error="STORE_NOT_FOUND"), AuthorizationDead),
    (Fault(platform_error="INSUFFICIENT_APP_SCOPE"), RequestRejected),
    (Fault(platform_error="NOT_AVAILABLE_ON_CURRENT_PLAN"), RequestRejected),
    (Fault(platform_error="STORE_IS_SUSPENDED"), RequestRejected),
    (Fault(platform_error="RATE_LIMITED"), RateLimited),
    (Fault(platform_error="TIMEOUT"), TemporaryFailure),
    (Fault(platform_error="INTERNAL_ERROR"), TemporaryFailure),
    (Fault(platform_error="WRONG_PARAMETER"), RequestRejected),
    (Fault(platform_error="PROFILE_NOT_FOUND"), RequestRejected),
    (Fault(platform_error="METHOD_NOT_ALLOWED"), RequestRejected),
    (Fault(platform_error="BRAND_NEW_CODE"), RequestRejected),
    (Fault(status=500), TemporaryFailure),
    (Fault(status=429, retry_after=3), RateLimited),
    (Fault(status=403), AuthorizationDead),
    (Fault(malformed=True), ProtocolError),
    (Fault(drop=True), TemporaryFailure),
]


@pytest.mark.parametrize(("fault", "kind"), PROFILE_FAULTS)
async def test_profile_faults(
    live_sandbox: LiveSandbox,
    ecwid: Ecwid,
    sim: EcwidSimulator,
    http: httpx2.AsyncClient,
    fault: Fault,
    kind: type[ProviderError],
) -> None:
    grant, _ = await connect(live_sandbox, ecwid, http)
    sim.faults.set("profile", fault)
    with pytest.raises(kind) as caught:
        await ecwid.identify(http, grant)
    assert type(caught.value) is kind
    if fault.platform_error:
        assert caught.value.code == fault.platform_error
    if kind is RateLimited:
        assert isinstance(caught.value, RateLimited) and caught.value.retry_after is not None
    assert grant.access_token not in str(caught.value)
    sim.faults.clear("profile")
    assert (await ecwid.identify(http, grant)).account_id == grant.account_id


async def test_authorize_fault(
    live_sandbox: LiveSandbox, ecwid: Ecwid, sim: EcwidSimulator, http: httpx2.AsyncClient
) -> None:
    sim.faults.set("authorize", Fault(status=503, times=1))
    with pytest.raises(BrowserError):
        await authorize(live_sandbox, ecwid, http)
    assert (await authorize(live_sandbox, ecwid, http))["code"]


# -- an independent RFC 6749 client -------------------------------------------------------------


async def test_authlib_drives_the_simulator(live_sandbox: LiveSandbox, sim: EcwidSimulator) -> None:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    base = live_sandbox.base_url("ecwid")
    redirect = live_sandbox.redirect_uri("ecwid")
    async with AsyncOAuth2Client(
        client_id=sim.app.client_id,
        client_secret=sim.app.client_secret,
        redirect_uri=redirect,
        scope="read_store_profile read_catalog",
        token_endpoint_auth_method="client_secret_post",
        timeout=10,
    ) as client:
        url, state = client.create_authorization_url(f"{base}/api/oauth/authorize")
        async with httpx2.AsyncClient(timeout=10) as browser:
            location = await press(browser, url, login="authlib-shop")
        assert callback_params(location)["state"] == state
        store = callback_params(location)["store_id"]
        token = await client.fetch_token(
            f"{base}/api/oauth/token/{store}", authorization_response=location
        )
        assert token["token_type"].lower() == "bearer"
        assert token["scope"] == "read_store_profile read_catalog"
        store_id = token["store_id"]
        profile = await client.get(f"{base}/api/v3/{store_id}/profile")
        assert profile.status_code == 200
        assert profile.json()["settings"]["storeName"] == "Authlib Shop"


# -- product file downloads ----------------------------------------------------------------------


def expected_bytes(offset: int, count: int) -> bytes:
    """Bytes `offset` to `offset + count` of any simulated file, where byte i is i % 251."""
    phase = offset % 251
    return (bytes(range(251)) * (count // 251 + 2))[phase : phase + count]


async def download(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    token: str | None,
    store: str,
    file_id: str,
    product_id: str = "561983491",
) -> httpx2.Response:
    url = f"{live_sandbox.base_url('ecwid')}/api/v3/{store}/products/{product_id}/files/{file_id}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.get(url, headers=headers)


async def test_product_file_streams_the_size_its_id_names(
    live_sandbox: LiveSandbox, ecwid: Ecwid, sim: EcwidSimulator, http: httpx2.AsyncClient
) -> None:
    grant, _ = await connect(live_sandbox, ecwid, http)
    store = grant.account_id
    small = await download(live_sandbox, http, grant.access_token, store, "1000003")
    assert small.status_code == 200
    assert small.headers["content-type"] == "application/octet-stream"
    assert small.headers["content-length"] == "1000003"
    assert small.content == expected_bytes(0, 1000003)
    empty = await download(live_sandbox, http, grant.access_token, store, "0")
    assert empty.status_code == 200 and empty.content == b""

    # A large file arrives in many pieces, each matching its place in the pattern.
    size = 48 * 1024 * 1024 + 5
    url = f"{live_sandbox.base_url('ecwid')}/api/v3/{store}/products/1/files/{size}"
    received = pieces = 0
    async with http.stream(
        "GET", url, headers={"Authorization": f"Bearer {grant.access_token}"}
    ) as answer:
        assert answer.status_code == 200 and answer.headers["content-length"] == str(size)
        async for piece in answer.aiter_bytes():
            assert piece == expected_bytes(received, len(piece))
            received += len(piece)
            pieces += 1
    assert received == size and pieces > 1


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("wrong token", 403, "INVALID_API_TOKEN"),
        ("no token", 403, "INVALID_API_TOKEN"),
        ("another store's token", 403, "INVALID_API_TOKEN"),
        ("unknown store", 404, "STORE_NOT_FOUND"),
        ("no read_catalog", 403, "INSUFFICIENT_APP_SCOPE"),
        ("file id not a number", 404, None),
        ("product id not a number", 404, None),
        ("file over the limit", 404, None),
    ],
)
async def test_product_file_refusals(
    live_sandbox: LiveSandbox,
    ecwid: Ecwid,
    sim: EcwidSimulator,
    http: httpx2.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    status: int,
    code: str | None,
) -> None:
    monkeypatch.setattr(sim, "max_file_bytes", 1000)
    grant, _ = await connect(live_sandbox, ecwid, http)
    token: str | None = grant.access_token
    store, file_id, product_id = grant.account_id, "100", "561983491"
    if case == "wrong token":
        token = "secret_not-a-token"
    elif case == "no token":
        token = None
    elif case == "another store's token":
        token = (await connect(live_sandbox, ecwid, http, login="other-store"))[0].access_token
    elif case == "unknown store":
        store = "1"
    elif case == "no read_catalog":
        token = (await connect(live_sandbox, ecwid, http, scopes=["read_orders"]))[0].access_token
    elif case == "file id not a number":
        file_id = "file-100"
    elif case == "product id not a number":
        product_id = "abc"
    elif case == "file over the limit":
        file_id = "1001"
    answer = await download(live_sandbox, http, token, store, file_id, product_id)
    assert answer.status_code == status
    body = answer.json()
    assert body["errorMessage"]
    assert body.get("errorCode") == code


async def test_product_file_downloads_count_against_the_rate_limit(
    live_sandbox: LiveSandbox,
    ecwid: Ecwid,
    sim: EcwidSimulator,
    http: httpx2.AsyncClient,
    frozen_now: object,
) -> None:
    sim.requests_per_minute = 2
    grant, _ = await connect(live_sandbox, ecwid, http)
    await ecwid.identify(http, grant)
    ok = await download(live_sandbox, http, grant.access_token, grant.account_id, "10")
    assert ok.status_code == 200
    limited = await download(live_sandbox, http, grant.access_token, grant.account_id, "10")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    assert limited.json()["errorCode"] == "RATE_LIMITED"
    sim.clock.advance(60)
    again = await download(live_sandbox, http, grant.access_token, grant.account_id, "10")
    assert again.status_code == 200 and again.content == expected_bytes(0, 10)


async def test_product_file_faults(
    live_sandbox: LiveSandbox, ecwid: Ecwid, sim: EcwidSimulator, http: httpx2.AsyncClient
) -> None:
    grant, _ = await connect(live_sandbox, ecwid, http)
    sim.faults.set("product_file", Fault(status=429, retry_after=4, times=1))
    limited = await download(live_sandbox, http, grant.access_token, grant.account_id, "10")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "4"
    await ecwid.identify(http, grant)  # other endpoints are not affected
    ok = await download(live_sandbox, http, grant.access_token, grant.account_id, "10")
    assert ok.status_code == 200


async def test_a_large_file_is_generated_chunk_by_chunk_not_held() -> None:
    chunks = file_chunks(500 * 1024 * 1024)
    tracemalloc.start()
    try:
        sizes = [len(await anext(chunks)) for _ in range(3)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sizes == [64 * 1024] * 3
    assert peak < 1024 * 1024
