"""AliExpress end to end: the real provider client against the simulator over a real socket."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

import httpx2
import pytest

from shopkeys.credentials import AppCredentials
from shopkeys.errors import (
    AuthorizationDead,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Grant
from shopkeys.providers.aliexpress import AliExpress, epoch_millis, sign
from shopkeys.sandbox.aliexpress import PRODUCT_LIST_API, PROFILE_API, AliExpressSimulator
from shopkeys.sandbox.browser import BrowserError, callback_params, press
from shopkeys.sandbox.core import Fault
from tests.conftest import LiveSandbox
from tests.providers.test_aliexpress import ERRORS

NAME = "aliexpress"


@pytest.fixture
def sim(
    live_sandbox: LiveSandbox, frozen_now: datetime, monkeypatch: pytest.MonkeyPatch
) -> AliExpressSimulator:
    """The simulator, its clock frozen: the expiries tests compare are exact, not near enough."""
    simulator = cast(AliExpressSimulator, live_sandbox.simulator(NAME))
    # The session's simulator outlives this test: put back what tests change beyond the clock.
    for field in ("code", "access", "refresh"):
        monkeypatch.setattr(simulator.lifetimes, field, getattr(simulator.lifetimes, field))
    monkeypatch.setattr(
        simulator, "rotate_refresh_tokens", AliExpressSimulator.rotate_refresh_tokens
    )
    return simulator


@pytest.fixture
def ali(live_sandbox: LiveSandbox, sim: AliExpressSimulator) -> AliExpress:
    return cast(AliExpress, live_sandbox.provider(NAME))


async def authorize(
    live: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, login: str = "demo-store"
) -> dict[str, str]:
    url = ali.authorization_url("the-state", live.redirect_uri(NAME))
    location = await press(http, url, login=login)
    assert location.startswith(live.redirect_uri(NAME) + "?")
    return callback_params(location)


async def connect(live: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress) -> Grant:
    params = await authorize(live, http, ali)
    return await ali.exchange_code(http, params["code"], live.redirect_uri(NAME))


async def profile(
    live: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, token: str
) -> dict[str, Any]:
    request = http.build_request(
        "POST", f"{live.base_url(NAME)}/sync", data={"method": PROFILE_API}
    )
    response = await http.send(ali.sign_request(request, token))
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


# -- the whole flow ---------------------------------------------------------------------------


async def test_connect_identify_call_and_refresh(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    params = await authorize(live_sandbox, http, ali, login="acme-store")
    assert params["state"] == "the-state"
    assert re.fullmatch(rf"3_{sim.app.client_id}_[A-Za-z0-9]{{32}}", params["code"])

    grant = await ali.exchange_code(http, params["code"], live_sandbox.redirect_uri(NAME))
    now = sim.clock()
    assert grant.access_expires_at == now + timedelta(days=1)
    assert grant.refresh_expires_at == now + timedelta(days=2)
    assert grant.account_name == "acme-store"
    assert grant.raw["code"] == "0" and "access_token" not in grant.raw

    account = await ali.identify(http, grant)
    assert account.account_id == grant.account_id == grant.raw["seller_id"]
    assert [shop.id for shop in account.shops] == [grant.account_id]

    body = await profile(live_sandbox, http, ali, grant.access_token)
    assert body["aliexpress_merchant_profile_get_response"]["profile"]["merchant_login_id"] == (
        "acme-store"
    )

    # Reconnecting the same store finds the same account.
    again = await connect(live_sandbox, http, ali)
    other = await ali.exchange_code(
        http, (await authorize(live_sandbox, http, ali, login="acme-store"))["code"], "r"
    )
    assert other.account_id == grant.account_id != again.account_id

    sim.clock.advance(3600)
    assert grant.refresh_token is not None
    refreshed = await ali.refresh(http, grant.refresh_token)
    assert refreshed.access_token != grant.access_token
    assert refreshed.account_id == grant.account_id
    # The access token's lifetime starts again, the refresh token's does not.
    assert refreshed.access_expires_at == grant.access_expires_at + timedelta(seconds=3600)
    assert refreshed.refresh_expires_at == grant.refresh_expires_at
    # The refresh token rotates: the next refresh needs the new one, with the same expiry.
    assert refreshed.refresh_token not in (None, grant.refresh_token)
    assert refreshed.refresh_token is not None
    twice = await ali.refresh(http, refreshed.refresh_token)
    assert twice.refresh_expires_at == grant.refresh_expires_at
    assert "profile" in str(await profile(live_sandbox, http, ali, twice.access_token))


async def test_old_refresh_token_is_refused_after_rotation(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    assert sim.rotate_refresh_tokens, "rotation is the default"
    grant = await connect(live_sandbox, http, ali)
    assert grant.refresh_token is not None
    refreshed = await ali.refresh(http, grant.refresh_token)
    assert refreshed.refresh_token not in (None, grant.refresh_token)
    assert refreshed.refresh_expires_at == grant.refresh_expires_at
    with pytest.raises(AuthorizationDead) as caught:
        await ali.refresh(http, grant.refresh_token)
    assert caught.value.code == "IllegalRefreshToken"
    assert grant.refresh_token not in str(caught.value)
    assert refreshed.refresh_token is not None
    await ali.refresh(http, refreshed.refresh_token)


async def test_refresh_token_is_kept_when_rotation_is_off(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    sim.rotate_refresh_tokens = False
    grant = await connect(live_sandbox, http, ali)
    assert grant.refresh_token is not None
    refreshed = await ali.refresh(http, grant.refresh_token)
    assert refreshed.refresh_token == grant.refresh_token
    again = await ali.refresh(http, grant.refresh_token)
    assert again.access_token != refreshed.access_token
    assert again.refresh_expires_at == grant.refresh_expires_at


# -- codes ------------------------------------------------------------------------------------


async def test_reused_code_is_rejected(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress
) -> None:
    code = (await authorize(live_sandbox, http, ali))["code"]
    await ali.exchange_code(http, code, "r")
    with pytest.raises(AuthorizationDead) as caught:
        await ali.exchange_code(http, code, "r")
    assert caught.value.code == "InvalidCode"
    assert code not in str(caught.value)


async def test_expired_code_is_rejected(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    code = (await authorize(live_sandbox, http, ali))["code"]
    sim.clock.advance(30 * 60 + 1)
    with pytest.raises(AuthorizationDead) as caught:
        await ali.exchange_code(http, code, "r")
    assert caught.value.code == "InvalidCode"


async def test_unknown_code_is_rejected(http: httpx2.AsyncClient, ali: AliExpress) -> None:
    with pytest.raises(AuthorizationDead):
        await ali.exchange_code(http, "3_501234_forged", "r")


# -- credentials, signatures, timestamps ------------------------------------------------------


def other_client(live: LiveSandbox, sim: AliExpressSimulator, **changes: Any) -> AliExpress:
    key = changes.pop("key", sim.app.client_id)
    secret = changes.pop("secret", sim.app.client_secret)
    clock = changes.pop("clock", sim.clock)
    return AliExpress(AppCredentials(key, secret), base_url=live.base_url(NAME), clock=clock)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"secret": "not-the-secret"}, "IncompleteSignature"),
        ({"key": "999999"}, "InvalidAppKey"),
    ],
)
async def test_bad_credentials_are_rejected(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    ali: AliExpress,
    sim: AliExpressSimulator,
    changes: dict[str, str],
    code: str,
) -> None:
    valid = (await authorize(live_sandbox, http, ali))["code"]
    wrong = other_client(live_sandbox, sim, **changes)
    with pytest.raises(RequestRejected) as caught:
        await wrong.exchange_code(http, valid, "r")
    assert caught.value.code == code
    assert sim.app.client_secret not in str(caught.value)
    # The refused call did not burn the code.
    await ali.exchange_code(http, valid, "r")


async def test_stale_timestamp_is_rejected(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    grant = await connect(live_sandbox, http, ali)
    behind = sim.clock() - timedelta(seconds=7201)
    late = other_client(live_sandbox, sim, clock=lambda: behind)
    assert grant.refresh_token is not None
    with pytest.raises(RequestRejected) as caught:
        await late.refresh(http, grant.refresh_token)
    assert caught.value.code == "InvalidTimestamp"


# -- the authorization page -------------------------------------------------------------------


async def test_deny_sends_access_denied(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress
) -> None:
    url = ali.authorization_url("st", live_sandbox.redirect_uri(NAME))
    location = await press(http, url, button="Deny")
    assert location.startswith(live_sandbox.redirect_uri(NAME) + "?")
    assert callback_params(location) == {
        "error": "access_denied",
        "error_description": "authorize reject",
        "state": "st",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"redirect_uri": "https://evil.example/cb"},
        {"client_id": "999999"},
        {"response_type": "token"},
    ],
)
async def test_bad_authorize_requests_get_an_error_page(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, sim: AliExpressSimulator, change: Any
) -> None:
    query = {
        "response_type": "code",
        "force_auth": "true",
        "client_id": sim.app.client_id,
        "redirect_uri": live_sandbox.redirect_uri(NAME),
        "state": "s",
        **change,
    }
    url = f"{live_sandbox.base_url(NAME)}/oauth/authorize?{urlencode(query)}"
    page = await http.get(url)
    assert page.status_code == 400 and "location" not in page.headers
    posted = await http.post(url, data={"login": "x", "decision": "authorize"})
    assert posted.status_code == 400 and "location" not in posted.headers
    with pytest.raises(BrowserError):
        await press(http, url)


# -- lifetimes --------------------------------------------------------------------------------


async def test_tokens_expire_per_lifetimes(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    sim.lifetimes.access = 60
    sim.lifetimes.refresh = 150
    grant = await connect(live_sandbox, http, ali)
    assert grant.access_expires_at is not None and grant.refresh_expires_at is not None
    assert grant.refresh_expires_at - grant.access_expires_at == timedelta(seconds=90)

    sim.clock.advance(61)
    body = await profile(live_sandbox, http, ali, grant.access_token)
    assert body["error_response"]["code"] == "IllegalAccessToken"

    assert grant.refresh_token is not None
    refreshed = await ali.refresh(http, grant.refresh_token)
    assert "error_response" not in await profile(live_sandbox, http, ali, refreshed.access_token)
    assert refreshed.raw["refresh_expires_in"] == 89

    # The rotated refresh token, never used, still dies with the original one's expiry.
    sim.clock.advance(90)
    assert refreshed.refresh_token is not None
    with pytest.raises(AuthorizationDead) as caught:
        await ali.refresh(http, refreshed.refresh_token)
    assert caught.value.code == "IllegalRefreshToken"


# -- fault injection --------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["token", "refresh"])
@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(status=503), TemporaryFailure),
        (Fault(status=500), TemporaryFailure),
        (Fault(malformed=True), ProtocolError),
        (Fault(drop=True), TemporaryFailure),
        (Fault(status=400), RequestRejected),
    ],
)
async def test_faults_are_classified(
    http: httpx2.AsyncClient,
    ali: AliExpress,
    sim: AliExpressSimulator,
    endpoint: str,
    fault: Fault,
    kind: type[ProviderError],
) -> None:
    sim.faults.set(endpoint, fault)
    call = ali.exchange_code(http, "3_x_y", "r") if endpoint == "token" else ali.refresh(http, "t")
    with pytest.raises(kind) as caught:
        await call
    assert isinstance(caught.value, kind)
    if kind is RequestRejected:
        assert type(caught.value) is RequestRejected


async def test_http_429_carries_retry_after(
    http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    sim.faults.set("token", Fault(status=429, retry_after=7))
    with pytest.raises(RateLimited) as caught:
        await ali.exchange_code(http, "3_x_y", "r")
    assert caught.value.retry_after == 7


@pytest.mark.parametrize(("code", "kind"), [(code, kind) for code, _, kind in ERRORS])
async def test_platform_errors_are_classified(
    http: httpx2.AsyncClient,
    ali: AliExpress,
    sim: AliExpressSimulator,
    code: str,
    kind: type[ProviderError],
) -> None:
    sim.faults.set("refresh", Fault(platform_error=code, times=1))
    with pytest.raises(kind) as caught:
        await ali.refresh(http, "anything")
    assert type(caught.value) is kind
    assert caught.value.code == code


async def test_api_call_limit_announces_its_ban(
    http: httpx2.AsyncClient,
    ali: AliExpress,
    sim: AliExpressSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sim, "ban_seconds", 9)
    sim.faults.set("token", Fault(platform_error="ApiCallLimit"))
    with pytest.raises(RateLimited) as caught:
        await ali.exchange_code(http, "3_x_y", "r")
    assert caught.value.retry_after == 9


async def test_business_api_faults_are_wrapped(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    sim.faults.set("profile", Fault(platform_error="ApiCallLimit", times=1))
    body = await profile(live_sandbox, http, ali, "whatever")
    error = body["error_response"]
    assert error["code"] == "ApiCallLimit" and error["type"] == "ISV"
    assert "more seconds" in error["msg"] and error["request_id"]


# -- raw HTTP, as a platform SDK would send it --------------------------------------------------


def sdk_params(sim: AliExpressSimulator, api: str, **extra: str) -> dict[str, str]:
    params = {
        "app_key": sim.app.client_id,
        "sign_method": "sha256",
        "timestamp": epoch_millis(sim.clock()),
        "partner_id": "iop-sdk-python-20220609",
        "method": api,
        "simplify": "false",
        "format": "json",
        **extra,
    }
    params["sign"] = sign(sim.app.client_secret, api, params)
    return params


def sdk_request(
    live: LiveSandbox, sim: AliExpressSimulator, api: str, shape: str = "method", **extra: str
) -> tuple[str, dict[str, str]]:
    """The URL and form of a system API call in one of the SDK's two shapes: `method` names the
    API at `/rest`, or the path does (`/rest/auth/token/...`) and there is no `method`."""
    params = sdk_params(sim, api, **extra)
    if shape == "method":
        return f"{live.base_url(NAME)}/rest", params
    del params["method"]
    params["sign"] = sign(sim.app.client_secret, api, params)
    return f"{live.base_url(NAME)}/rest{api}", params


async def test_raw_sdk_shape_through_the_mount(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    base = f"{live_sandbox.url}/sandbox/aliexpress"
    code = (await authorize(live_sandbox, http, ali))["code"]
    created = await http.post(f"{base}/rest", data=sdk_params(sim, "/auth/token/create", code=code))
    assert created.status_code == 200
    token = created.json()
    assert token["code"] == "0" and token["sp"] == "ae"
    assert isinstance(token["expire_time"], int) and isinstance(token["expires_in"], int)

    # The path shape: a POST with the parameters in the query string and no `method`.
    url, params = sdk_request(
        live_sandbox, sim, "/auth/token/refresh", "path", refresh_token=token["refresh_token"]
    )
    refreshed = await http.post(url, params=params)
    assert refreshed.status_code == 200
    rotated = refreshed.json()
    assert rotated["refresh_token_valid_time"] == token["refresh_token_valid_time"]
    assert rotated["refresh_token"] != token["refresh_token"]

    # A client that signs the API name as seen through the mount is accepted too.
    params = sdk_params(sim, "/auth/token/refresh", refresh_token=rotated["refresh_token"])
    del params["method"]
    params["sign"] = sign(sim.app.client_secret, "/sandbox/aliexpress/auth/token/refresh", params)
    again = await http.post(f"{base}/rest/auth/token/refresh", data=params)
    assert again.json()["code"] == "0"

    # A business call, session in the form body.
    call = {
        "app_key": sim.app.client_id,
        "method": PROFILE_API,
        "sign_method": "sha256",
        "timestamp": epoch_millis(sim.clock()),
        "session": token["access_token"],
    }
    call["sign"] = sign(sim.app.client_secret, PROFILE_API, call)
    answer = await http.post(f"{base}/sync", data=call)
    assert "profile" in answer.json()["aliexpress_merchant_profile_get_response"]


@pytest.mark.parametrize(
    ("path", "change", "code"),
    [
        ("/rest", {"code": None}, "MissingParameter"),
        ("/rest", {"method": None}, "MissingParameter"),
        ("/rest", {"method": "/no/such/api"}, "InvalidApiPath"),
        ("/rest", {"sign": "0" * 64}, "IncompleteSignature"),
        ("/rest", {"sign_method": "md5"}, "IncompleteSignature"),
        ("/rest", {"timestamp": "yesterday"}, "InvalidTimestamp"),
        ("/rest", {"app_key": None}, "MissingParameter"),
    ],
)
async def test_raw_system_api_errors_are_flat(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    sim: AliExpressSimulator,
    path: str,
    change: dict[str, str | None],
    code: str,
) -> None:
    params = sdk_params(sim, "/auth/token/create", code="3_x_y")
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    if "sign" not in change:
        api = params.get("method", "/auth/token/create")
        params["sign"] = sign(sim.app.client_secret, api, params)
    response = await http.post(f"{live_sandbox.base_url(NAME)}{path}", data=params)
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == code and body["type"] == "ISV"
    assert body["message"] and body["request_id"]


@pytest.mark.parametrize("shape", ["method", "path"])
@pytest.mark.parametrize("api", ["/auth/token/create", "/auth/token/refresh"])
async def test_token_apis_by_get_are_refused(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    ali: AliExpress,
    sim: AliExpressSimulator,
    api: str,
    shape: str,
) -> None:
    if api == "/auth/token/create":
        secret = {"code": (await authorize(live_sandbox, http, ali))["code"]}
    else:
        grant = await connect(live_sandbox, http, ali)
        assert grant.refresh_token is not None
        secret = {"refresh_token": grant.refresh_token}
    url, params = sdk_request(live_sandbox, sim, api, shape, **secret)
    response = await http.get(url, params=params)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    body = response.json()
    assert body["code"] == "HttpMethodNotAllowed" and body["type"] == "ISV"
    assert "POST" in body["message"] and body["request_id"]
    assert next(iter(secret.values())) not in response.text
    # Refused before anything was looked at: the code is not spent, the refresh token not
    # rotated, and the same call by POST works.
    answer = await http.post(url, data=params)
    assert answer.status_code == 200 and answer.json()["code"] == "0"


async def test_business_api_by_get_is_still_served(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress
) -> None:
    grant = await connect(live_sandbox, http, ali)
    request = http.build_request(
        "GET", f"{live_sandbox.base_url(NAME)}/sync", params={"method": PROFILE_API}
    )
    response = await http.send(ali.sign_request(request, grant.access_token))
    assert response.status_code == 200
    assert "profile" in response.json()["aliexpress_merchant_profile_get_response"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"session": "50000unknown"}, "IllegalAccessToken"),
        ({"session": None}, "MissingParameter"),
        ({"method": "aliexpress.no.such.api"}, "InvalidApiPath"),
        ({"app_key": "999999"}, "InvalidAppKey"),
    ],
)
async def test_raw_business_api_errors_are_wrapped(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    sim: AliExpressSimulator,
    change: dict[str, str | None],
    code: str,
) -> None:
    params = {
        "app_key": sim.app.client_id,
        "method": PROFILE_API,
        "sign_method": "sha256",
        "timestamp": epoch_millis(sim.clock()),
        "session": "50000whatever",
    }
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    params["sign"] = sign(sim.app.client_secret, params["method"], params)
    response = await http.get(f"{live_sandbox.base_url(NAME)}/sync", params=params)
    error = response.json()["error_response"]
    assert error["code"] == code and error["msg"]


# -- aliexpress.solution.product.list.get ---------------------------------------------------------


def product_list_call(
    sim: AliExpressSimulator,
    token: str,
    query: object = None,
    changes: dict[str, str | None] | None = None,
) -> dict[str, str]:
    """The form of a product list call as an IOP SDK signs it; `changes` edit it before signing."""
    params = {
        "app_key": sim.app.client_id,
        "method": PRODUCT_LIST_API,
        "sign_method": "sha256",
        "timestamp": epoch_millis(sim.clock()),
        "session": token,
        "aeop_a_e_product_list_query": json.dumps(
            query if query is not None else {"product_status_type": "onSelling"}
        ),
    }
    for key, value in (changes or {}).items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    params["sign"] = sign(sim.app.client_secret, params.get("method", ""), params)
    return params


async def test_product_list_pages_through_the_sellers_products(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    grant = await connect(live_sandbox, http, ali)
    url = f"{live_sandbox.base_url(NAME)}/sync"
    seen: list[int] = []
    for page in (1, 2, 3):
        query = {"product_status_type": "onSelling", "current_page": page, "page_size": 20}
        # Parameters in a form POST body, as the IOP SDKs send them.
        answer = await http.post(url, data=product_list_call(sim, grant.access_token, query))
        assert answer.status_code == 200
        body = answer.json()["aliexpress_solution_product_list_get_response"]
        assert body["request_id"]
        result = body["result"]
        assert result["success"] is True and result["current_page"] == page
        assert result["product_count"] == sim.products_per_seller
        assert result["total_page"] == 3
        items = result["aeop_a_e_product_display_d_t_o_list"]["item_display_dto"]
        seen += [item["product_id"] for item in items]
    assert len(seen) == len(set(seen)) == sim.products_per_seller
    assert items[0]["subject"] and items[0]["currency_code"] == "USD"

    # The same call as a signed GET finds the same first page; offline products: none.
    first = await http.get(url, params=product_list_call(sim, grant.access_token))
    listed = first.json()["aliexpress_solution_product_list_get_response"]["result"]
    assert [
        i["product_id"] for i in listed["aeop_a_e_product_display_d_t_o_list"]["item_display_dto"]
    ] == seen[:20]
    offline = {"product_status_type": "offline"}
    none = await http.post(url, data=product_list_call(sim, grant.access_token, offline))
    result = none.json()["aliexpress_solution_product_list_get_response"]["result"]
    assert result["product_count"] == 0
    assert result["aeop_a_e_product_display_d_t_o_list"]["item_display_dto"] == []


@pytest.mark.parametrize(
    ("query", "changes", "code"),
    [
        (None, {"session": "50000unknown"}, "IllegalAccessToken"),
        (None, {"session": None}, "MissingParameter"),
        (None, {"aeop_a_e_product_list_query": None}, "MissingParameter"),
        (None, {"aeop_a_e_product_list_query": "{oops"}, "InvalidParameter"),
        ([1, 2], {}, "InvalidParameter"),
        ({"page_size": 5}, {}, "MissingParameter"),
        ({"product_status_type": "sold"}, {}, "InvalidParameter"),
        ({"product_status_type": "onSelling", "page_size": 100}, {}, "InvalidParameter"),
        ({"product_status_type": "onSelling", "current_page": 0}, {}, "InvalidParameter"),
        (None, {"app_key": "999999"}, "InvalidAppKey"),
    ],
)
async def test_product_list_errors_are_wrapped(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    ali: AliExpress,
    sim: AliExpressSimulator,
    query: object,
    changes: dict[str, str | None],
    code: str,
) -> None:
    grant = await connect(live_sandbox, http, ali)
    params = product_list_call(sim, grant.access_token, query, changes)
    response = await http.post(f"{live_sandbox.base_url(NAME)}/sync", data=params)
    assert response.status_code == 200
    error = response.json()["error_response"]
    assert error["code"] == code and error["type"] == "ISV"
    assert error["msg"] and error["request_id"]


async def test_product_list_signature_and_session_expiry(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    grant = await connect(live_sandbox, http, ali)
    url = f"{live_sandbox.base_url(NAME)}/sync"
    # A query changed after signing: the signature covers body parameters too.
    params = product_list_call(sim, grant.access_token)
    params["aeop_a_e_product_list_query"] = json.dumps({"product_status_type": "offline"})
    tampered = (await http.post(url, data=params)).json()["error_response"]
    assert tampered["code"] == "IncompleteSignature"
    forged = product_list_call(sim, grant.access_token)
    forged["sign"] = sign("not-the-secret", PRODUCT_LIST_API, forged)
    assert (await http.post(url, data=forged)).json()["error_response"]["code"] == (
        "IncompleteSignature"
    )

    assert sim.lifetimes.access is not None
    sim.clock.advance(sim.lifetimes.access + 1)
    expired = await http.post(url, data=product_list_call(sim, grant.access_token))
    assert expired.json()["error_response"]["code"] == "IllegalAccessToken"


async def test_product_list_is_its_own_fault_endpoint(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, ali: AliExpress, sim: AliExpressSimulator
) -> None:
    grant = await connect(live_sandbox, http, ali)
    url = f"{live_sandbox.base_url(NAME)}/sync"
    sim.faults.set("product_list", Fault(status=429, retry_after=3, times=1))
    limited = await http.post(url, data=product_list_call(sim, grant.access_token))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    # The profile API is another endpoint and is not affected.
    assert (
        "profile"
        in (await profile(live_sandbox, http, ali, grant.access_token))[
            "aliexpress_merchant_profile_get_response"
        ]
    )
    sim.faults.set("product_list", Fault(platform_error="ApiCallLimit", times=1))
    banned = await http.post(url, data=product_list_call(sim, grant.access_token))
    assert banned.json()["error_response"]["code"] == "ApiCallLimit"
    ok = await http.post(url, data=product_list_call(sim, grant.access_token))
    assert "aliexpress_solution_product_list_get_response" in ok.json()
