"""The SHOPLINE simulator over a real socket, driven by shopkeys' provider, raw HTTP and Authlib."""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shopkeys.clock import from_epoch_seconds
from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Grant
from shopkeys.providers import AppCredentials
from shopkeys.providers.shopline import Shopline
from shopkeys.sandbox.browser import BrowserError, callback_params, press
from shopkeys.sandbox.core import Fault
from shopkeys.sandbox.shopline import ShoplineSimulator
from shopkeys.sandbox.signatures import shopline_webhook_signature
from tests.conftest import LiveSandbox
from tests.live import serve
from tests.providers.test_webhook_reading import (
    DOCS_PAYLOAD,
    DOCS_SECRET,
    DOCS_SIGN,
    DOCS_TIMESTAMP,
)

NAME = "shopline"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX24 = re.compile(r"^[0-9a-f]{24}$")
B64URL = r"[A-Za-z0-9_-]+"
JWT = re.compile(rf"^{B64URL}\.{B64URL}\.{B64URL}$")


def sim(live: LiveSandbox) -> ShoplineSimulator:
    simulator = live.simulator(NAME)
    assert isinstance(simulator, ShoplineSimulator)
    return simulator


def shopline(live: LiveSandbox) -> Shopline:
    provider = live.provider(NAME)
    assert isinstance(provider, Shopline)
    return provider


async def authorize(
    live: LiveSandbox, http: httpx2.AsyncClient, *, login: str = "demo-store", state: str = "st-1"
) -> dict[str, str]:
    url = shopline(live).authorization_url(state, live.redirect_uri(NAME))
    location = await press(http, url, login=login)
    assert location.startswith(live.redirect_uri(NAME) + "?")
    return callback_params(location)


async def connect(live: LiveSandbox, http: httpx2.AsyncClient, **kwargs: str) -> Grant:
    params = await authorize(live, http, **kwargs)
    return await shopline(live).exchange_code(http, params["code"], live.redirect_uri(NAME))


# -- the whole flow -------------------------------------------------------------------------------


async def test_authorize_exchange_identify_refresh_rotation(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    provider = shopline(live_sandbox)
    params = await authorize(live_sandbox, http, state="state-ü")
    assert set(params) == {"code", "state"}
    assert params["state"] == "state-ü"
    assert HEX64.match(params["code"])

    grant = await provider.exchange_code(http, params["code"], live_sandbox.redirect_uri(NAME))
    assert JWT.match(grant.access_token)
    assert grant.refresh_token is not None and HEX64.match(grant.refresh_token)
    assert HEX24.match(grant.account_id)
    assert grant.scopes == ["merchants", "products", "orders"]
    created = from_epoch_seconds(grant.raw["created_at"])
    assert grant.access_expires_at == created + timedelta(seconds=15778476)
    assert grant.refresh_expires_at == grant.access_expires_at + timedelta(days=1)
    assert grant.raw["token_type"] == "Bearer"
    assert "access_token" not in grant.raw and "refresh_token" not in grant.raw

    account = await provider.identify(http, grant)
    assert account.account_id == grant.account_id
    assert account.name == "Demo Store"
    assert account.shops[0].id == grant.account_id
    assert account.shops[0].extra["handle"] == "demostore"
    assert account.extra["scopes"] == ["merchants", "products", "orders"]

    # The code works once.
    with pytest.raises(AuthorizationDead) as reused:
        await provider.exchange_code(http, params["code"], live_sandbox.redirect_uri(NAME))
    assert reused.value.code == "invalid_grant"
    assert reused.value.status == 400

    assert grant.refresh_token is not None
    fresh = await provider.refresh(http, grant.refresh_token)
    assert fresh.account_id == grant.account_id
    assert fresh.access_token != grant.access_token
    assert fresh.refresh_token not in (None, grant.refresh_token)
    assert (await provider.identify(http, fresh)).account_id == grant.account_id

    # Rotation: the used refresh token and its access token are revoked.
    with pytest.raises(AuthorizationDead) as old_refresh:
        await provider.refresh(http, grant.refresh_token)
    assert old_refresh.value.code == "invalid_grant"
    with pytest.raises(AuthorizationDead) as old_access:
        await provider.identify(http, grant)
    assert old_access.value.code == "TOKEN_REVOKED"
    assert old_access.value.status == 401

    assert fresh.refresh_token is not None
    again = await provider.refresh(http, fresh.refresh_token)
    assert again.account_id == grant.account_id


async def test_same_login_same_merchant(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    first = await connect(live_sandbox, http, login="corner-shop")
    second = await connect(live_sandbox, http, login="corner-shop")
    other = await connect(live_sandbox, http, login="other-shop")
    assert first.account_id == second.account_id != other.account_id
    assert first.access_token != second.access_token


async def test_expired_code_is_rejected(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    simulator = sim(live_sandbox)
    assert simulator.lifetimes.code == 600
    late = await authorize(live_sandbox, http)
    in_time = await authorize(live_sandbox, http)
    simulator.clock.advance(599)
    await shopline(live_sandbox).exchange_code(
        http, in_time["code"], live_sandbox.redirect_uri(NAME)
    )
    simulator.clock.advance(2)
    with pytest.raises(AuthorizationDead) as caught:
        await shopline(live_sandbox).exchange_code(
            http, late["code"], live_sandbox.redirect_uri(NAME)
        )
    assert caught.value.code == "invalid_grant"


async def test_wrong_redirect_uri_on_exchange_does_not_use_up_the_code(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    params = await authorize(live_sandbox, http)
    provider = shopline(live_sandbox)
    with pytest.raises(AuthorizationDead):
        await provider.exchange_code(http, params["code"], "http://evil.test/oauth/callback")
    grant = await provider.exchange_code(http, params["code"], live_sandbox.redirect_uri(NAME))
    assert grant.account_id


async def test_bad_client_secret_is_rejected(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    params = await authorize(live_sandbox, http)
    app = sim(live_sandbox).app
    wrong = Shopline(
        AppCredentials(app.client_id, "not-the-secret"), base_url=live_sandbox.base_url(NAME)
    )
    with pytest.raises(RequestRejected) as caught:
        await wrong.exchange_code(http, params["code"], live_sandbox.redirect_uri(NAME))
    assert (caught.value.code, caught.value.status) == ("invalid_client", 401)
    # Nothing was consumed by the refused request.
    grant = await shopline(live_sandbox).exchange_code(
        http, params["code"], live_sandbox.redirect_uri(NAME)
    )
    assert grant.refresh_token is not None
    with pytest.raises(RequestRejected) as refused:
        await wrong.refresh(http, grant.refresh_token)
    assert refused.value.code == "invalid_client"
    with pytest.raises(RequestRejected) as revoke_refused:
        await wrong.revoke(http, grant.access_token)
    assert (revoke_refused.value.code, revoke_refused.value.status) == ("unauthorized_client", 403)
    await shopline(live_sandbox).identify(http, grant)  # still alive


# -- the authorization page -----------------------------------------------------------------------


async def test_deny_redirects_with_access_denied(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    url = shopline(live_sandbox).authorization_url("deny-state", live_sandbox.redirect_uri(NAME))
    location = await press(http, url, button="Deny")
    assert location.startswith(live_sandbox.redirect_uri(NAME) + "?")
    params = callback_params(location)
    assert params["error"] == "access_denied"
    assert params["error_description"]
    assert params["state"] == "deny-state"
    assert "code" not in params
    with pytest.raises(AuthorizationDead):
        await shopline(live_sandbox).exchange_code(
            http, "", live_sandbox.redirect_uri(NAME), **params
        )


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://evil.test/oauth/callback/shopline",
        "http://shopkeys.test/oauth/callback/shopline?next=x",
        "http://shopkeys.test/oauth/callback/shopline/",
    ],
)
async def test_unregistered_redirect_uri_gets_an_error_page(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, redirect_uri: str
) -> None:
    app = sim(live_sandbox).app
    url = f"{live_sandbox.base_url(NAME)}/oauth/authorize"
    query = {
        "client_id": app.client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": "products",
    }
    page = await http.get(url, params=query)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert ">Authorize</button>" not in page.text
    posted = await http.post(url, params=query, data={"decision": "authorize", "login": "x"})
    assert posted.status_code == 400
    assert "location" not in posted.headers
    with pytest.raises(BrowserError):
        await press(http, str(page.url))


async def test_unknown_client_gets_an_error_page(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    page = await http.get(
        f"{live_sandbox.base_url(NAME)}/oauth/authorize",
        params={
            "client_id": "nobody",
            "redirect_uri": live_sandbox.redirect_uri(NAME),
            "response_type": "code",
            "scope": "products",
        },
    )
    assert page.status_code == 401
    assert "location" not in page.headers


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": ""}, "invalid_scope"),
        ({"scope": "products READ-ALL"}, "invalid_scope"),
    ],
)
async def test_bad_authorize_parameters_redirect_with_an_error(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, change: dict[str, str], error: str
) -> None:
    app = sim(live_sandbox).app
    query = {
        "client_id": app.client_id,
        "redirect_uri": live_sandbox.redirect_uri(NAME),
        "response_type": "code",
        "scope": "products",
        "state": "s1",
    } | change
    answer = await http.get(f"{live_sandbox.base_url(NAME)}/oauth/authorize", params=query)
    assert answer.status_code == 302
    params = callback_params(answer.headers["location"])
    assert params["error"] == error
    assert params["state"] == "s1"


async def test_callback_without_state_has_no_state(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    app = sim(live_sandbox).app
    url = (
        f"{live_sandbox.base_url(NAME)}/oauth/authorize?client_id={app.client_id}"
        f"&redirect_uri={live_sandbox.redirect_uri(NAME)}&response_type=code&scope=products"
    )
    params = callback_params(await press(http, url))
    assert set(params) == {"code"}


# -- lifetimes ------------------------------------------------------------------------------------


async def test_tokens_expire_per_lifetimes(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    simulator = sim(live_sandbox)
    saved = replace(simulator.lifetimes)
    simulator.lifetimes.access = 60
    simulator.lifetimes.refresh = 120
    try:
        provider = shopline(live_sandbox)
        grant = await connect(live_sandbox, http)
        assert grant.raw["expires_in"] == 60
        created = from_epoch_seconds(grant.raw["created_at"])
        assert grant.access_expires_at == created + timedelta(seconds=60)
        simulator.clock.advance(30)
        await provider.identify(http, grant)
        simulator.clock.advance(31)
        with pytest.raises(AccessExpired) as expired:
            await provider.identify(http, grant)
        assert expired.value.code == "TOKEN_EXPIRED"
        # The refresh token outlives its access token.
        assert grant.refresh_token is not None
        fresh = await provider.refresh(http, grant.refresh_token)
        await provider.identify(http, fresh)
        simulator.clock.advance(121)
        assert fresh.refresh_token is not None
        with pytest.raises(AuthorizationDead) as dead:
            await provider.refresh(http, fresh.refresh_token)
        assert dead.value.code == "invalid_grant"
    finally:
        simulator.lifetimes = saved


async def test_tokens_without_expiry(live_sandbox: LiveSandbox, http: httpx2.AsyncClient) -> None:
    simulator = sim(live_sandbox)
    saved = replace(simulator.lifetimes)
    simulator.lifetimes.access = None
    simulator.lifetimes.refresh = None
    try:
        grant = await connect(live_sandbox, http)
        assert "expires_in" not in grant.raw
        # An OAuth grant (it came with a refresh token) is never read as "never expires": the
        # provider assumes SHOPLINE's documented lifetime, and refreshes ahead of it.
        lifetime = shopline(live_sandbox).default_access_lifetime
        assert lifetime is not None and grant.access_expires_at is not None
        issued = grant.access_expires_at - lifetime
        assert abs((issued - simulator.clock()).total_seconds()) < 5
        # The simulator's token itself does not expire.
        simulator.clock.advance(10 * 365 * 86400)
        await shopline(live_sandbox).identify(http, grant)
    finally:
        simulator.lifetimes = saved


# -- revoke ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["access", "refresh"])
async def test_revoke_ends_the_pair(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, which: str
) -> None:
    provider = shopline(live_sandbox)
    grant = await connect(live_sandbox, http)
    assert grant.refresh_token is not None
    await provider.revoke(http, grant.access_token if which == "access" else grant.refresh_token)
    with pytest.raises(AuthorizationDead) as revoked:
        await provider.identify(http, grant)
    assert revoked.value.code == "TOKEN_REVOKED"
    with pytest.raises(AuthorizationDead):
        await provider.refresh(http, grant.refresh_token)
    # Revoking again, or revoking nonsense, is still a success.
    await provider.revoke(http, grant.access_token)
    await provider.revoke(http, "no-such-token")


# -- faults ---------------------------------------------------------------------------------------


async def _call(live: LiveSandbox, http: httpx2.AsyncClient, endpoint: str) -> None:
    """Reach `endpoint` through the provider, setting up what it needs first."""
    provider = shopline(live)
    if endpoint == "authorize":
        await authorize(live, http)
        return
    if endpoint == "token":
        params = await authorize(live, http)
        await provider.exchange_code(http, params["code"], live.redirect_uri(NAME))
        return
    simulator = sim(live)
    fault = simulator.faults.active().get(endpoint)
    simulator.faults.clear(endpoint)
    grant = await connect(live, http)
    if fault is not None:
        simulator.faults.set(endpoint, fault)
    assert grant.refresh_token is not None
    if endpoint == "refresh":
        await provider.refresh(http, grant.refresh_token)
    elif endpoint == "token_info":
        await provider.identify(http, grant)
    else:
        await provider.revoke(http, grant.access_token)


ENDPOINTS = ["token", "refresh", "token_info", "revoke"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(status=503), TemporaryFailure),
        (Fault(status=500), TemporaryFailure),
        (Fault(malformed=True), ProtocolError),
        (Fault(drop=True), TemporaryFailure),
    ],
)
async def test_faults_become_classified_errors(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    endpoint: str,
    fault: Fault,
    kind: type[ProviderError],
) -> None:
    sim(live_sandbox).faults.set(endpoint, fault)
    with pytest.raises(kind) as caught:
        await _call(live_sandbox, http, endpoint)
    assert caught.value.provider == "shopline"
    assert caught.value.endpoint == endpoint


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_rate_limit_fault_carries_retry_after(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, endpoint: str
) -> None:
    sim(live_sandbox).faults.set(endpoint, Fault(status=429, retry_after=12))
    with pytest.raises(RateLimited) as caught:
        await _call(live_sandbox, http, endpoint)
    assert caught.value.retry_after == 12.0


async def test_fault_fires_once_then_the_real_answer(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    sim(live_sandbox).faults.set("token", Fault(status=503, times=1))
    params = await authorize(live_sandbox, http)
    provider = shopline(live_sandbox)
    with pytest.raises(TemporaryFailure):
        await provider.exchange_code(http, params["code"], live_sandbox.redirect_uri(NAME))
    await provider.exchange_code(http, params["code"], live_sandbox.redirect_uri(NAME))


async def test_authorize_page_fault(live_sandbox: LiveSandbox, http: httpx2.AsyncClient) -> None:
    sim(live_sandbox).faults.set("authorize", Fault(status=503))
    with pytest.raises(BrowserError):
        await _call(live_sandbox, http, "authorize")


PLATFORM_ERRORS = [
    ("token", "invalid_grant", AuthorizationDead, 400),
    ("token", "invalid_client", RequestRejected, 401),
    ("token", "invalid_request", RequestRejected, 400),
    ("token", "unsupported_grant_type", RequestRejected, 400),
    ("token", "invalid_scope", RequestRejected, 400),
    ("token", "unauthorized_client", RequestRejected, 403),
    ("token", "access_denied", AuthorizationDead, 400),
    ("token", "server_error", TemporaryFailure, 500),
    ("token", "temporarily_unavailable", TemporaryFailure, 503),
    ("refresh", "invalid_grant", AuthorizationDead, 400),
    ("refresh", "invalid_client", RequestRejected, 401),
    ("token_info", "TOKEN_EXPIRED", AccessExpired, 401),
    ("token_info", "TOKEN_REVOKED", AuthorizationDead, 401),
    ("token_info", "MISSING_TOKEN_ERROR", RequestRejected, 401),
    ("token_info", "invalid_token", AuthorizationDead, 401),
    ("revoke", "unauthorized_client", RequestRejected, 403),
]


@pytest.mark.parametrize(("endpoint", "code", "kind", "status"), PLATFORM_ERRORS)
async def test_platform_error_faults(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    endpoint: str,
    code: str,
    kind: type[ProviderError],
    status: int,
) -> None:
    sim(live_sandbox).faults.set(endpoint, Fault(platform_error=code))
    with pytest.raises(kind) as caught:
        await _call(live_sandbox, http, endpoint)
    assert caught.value.status == status
    if status < 500:
        assert caught.value.code == code


# -- raw HTTP, as an SDK or another OAuth client would -------------------------------------------


async def _raw_code(live: LiveSandbox, http: httpx2.AsyncClient) -> str:
    return (await authorize(live, http))["code"]


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.mark.parametrize("shape", ["json", "form", "query", "basic-form"])
async def test_token_endpoint_reads_json_form_query_and_basic(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, shape: str
) -> None:
    app = sim(live_sandbox).app
    url = f"{live_sandbox.base_url(NAME)}/oauth/token"
    assert url.endswith("/sandbox/shopline/oauth/token")
    params: dict[str, Any] = {
        "code": await _raw_code(live_sandbox, http),
        "grant_type": "authorization_code",
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "redirect_uri": live_sandbox.redirect_uri(NAME),
    }
    if shape == "json":
        answer = await http.post(url, json=params)
    elif shape == "form":
        answer = await http.post(url, data=params)
    elif shape == "query":
        answer = await http.post(url, params=params)
    else:
        del params["client_id"], params["client_secret"]
        answer = await http.post(
            url, data=params, headers={"Authorization": _basic(app.client_id, app.client_secret)}
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
        "created_at",
        "resource_owner_id",
    }
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "merchants products orders"
    assert isinstance(body["created_at"], int) and isinstance(body["expires_in"], int)
    # Refresh as the docs show it: everything in the query string.
    refreshed = await http.post(
        url,
        params={
            "grant_type": "refresh_token",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "refresh_token": body["refresh_token"],
            "redirect_uri": live_sandbox.redirect_uri(NAME),
        },
    )
    assert refreshed.status_code == 200
    info = await http.get(
        f"{live_sandbox.base_url(NAME)}/oauth/token/info",
        headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"},
    )
    assert info.status_code == 200
    data = info.json()
    assert data["scope"] == ["merchants", "products", "orders"]
    assert data["resource_owner_id"] == data["merchant"]["_id"] == body["resource_owner_id"]
    assert set(data["merchant"]) == {"_id", "handle", "name", "email"}
    assert data["application"] == {"uid": app.client_id}
    # The JWT names the merchant.
    payload = refreshed.json()["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == body["resource_owner_id"]


@pytest.mark.parametrize(
    ("params", "auth", "status", "error"),
    [
        ({}, True, 400, "invalid_request"),
        ({"grant_type": "password"}, True, 400, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "redirect_uri": "x"}, True, 400, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "abc"}, True, 400, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "a", "redirect_uri": "b"}, False, 401,
         "invalid_client"),
        ({"grant_type": "authorization_code", "code": "a", "redirect_uri": "b"}, True, 400,
         "invalid_grant"),
        ({"grant_type": "refresh_token"}, True, 400, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, False, 401, "invalid_client"),
        ({"grant_type": "refresh_token", "refresh_token": "nope"}, True, 400, "invalid_grant"),
    ],
)  # fmt: skip
async def test_token_endpoint_errors(
    live_sandbox: LiveSandbox,
    http: httpx2.AsyncClient,
    params: dict[str, str],
    auth: bool,
    status: int,
    error: str,
) -> None:
    app = sim(live_sandbox).app
    if auth:
        params = params | {"client_id": app.client_id, "client_secret": app.client_secret}
    answer = await http.post(f"{live_sandbox.base_url(NAME)}/oauth/token", json=params)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]


async def test_token_endpoint_edge_cases(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    base = live_sandbox.base_url(NAME)
    app = sim(live_sandbox).app
    assert (await http.get(f"{base}/oauth/token")).status_code == 405
    broken = await http.post(
        f"{base}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers={"Authorization": "Basic !!!not-base64"},
    )
    assert broken.status_code == 401
    wrong = await http.post(
        f"{base}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers={"Authorization": _basic(app.client_id, "wrong")},
    )
    assert wrong.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "MISSING_TOKEN_ERROR"),
        ({"Authorization": "Bearer"}, "MISSING_TOKEN_ERROR"),
        ({"Authorization": "Basic abc"}, "MISSING_TOKEN_ERROR"),
        ({"Authorization": "Bearer not.a.token"}, "invalid_token"),
    ],
)
async def test_token_info_refusals(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, headers: dict[str, str], error: str
) -> None:
    answer = await http.get(f"{live_sandbox.base_url(NAME)}/oauth/token/info", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] == error
    assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_revoke_over_raw_http(live_sandbox: LiveSandbox, http: httpx2.AsyncClient) -> None:
    app = sim(live_sandbox).app
    grant = await connect(live_sandbox, http)
    url = f"{live_sandbox.base_url(NAME)}/oauth/revoke"
    refused = await http.post(url, json={"token": grant.access_token})
    assert refused.status_code == 403
    assert refused.json()["error"] == "unauthorized_client"
    done = await http.post(
        url,
        json={"token": grant.access_token},
        headers={"Authorization": _basic(app.client_id, app.client_secret)},
    )
    assert (done.status_code, done.json()) == (200, {})
    # client_secret_post works too (Doorkeeper reads both).
    again = await http.post(
        url,
        data={"token": grant.access_token, "client_id": app.client_id,
              "client_secret": app.client_secret},
    )  # fmt: skip
    assert (again.status_code, again.json()) == (200, {})


# -- an independent RFC 6749 client ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
async def test_authlib_client(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, method: str
) -> None:
    app = sim(live_sandbox).app
    base = live_sandbox.base_url(NAME)
    seen: list[httpx2.Request] = []

    async def record(request: httpx2.Request) -> None:
        seen.append(request)

    async with AsyncOAuth2Client(
        client_id=app.client_id,
        client_secret=app.client_secret,
        scope="merchants products",
        redirect_uri=live_sandbox.redirect_uri(NAME),
        token_endpoint_auth_method=method,
        event_hooks={"request": [record]},
        timeout=10,
    ) as oauth:
        url, state = oauth.create_authorization_url(f"{base}/oauth/authorize")
        location = await press(http, url, login="authlib-store")
        token = await oauth.fetch_token(
            f"{base}/oauth/token", authorization_response=location, state=state
        )
        assert token["token_type"] == "Bearer"
        assert token["scope"] == "merchants products"
        (exchange,) = seen
        assert exchange.headers["content-type"].startswith("application/x-www-form-urlencoded")
        assert ("authorization" in exchange.headers) == (method == "client_secret_basic")
        assert (b"client_secret=" in exchange.content) == (method == "client_secret_post")

        refreshed = await oauth.refresh_token(
            f"{base}/oauth/token", refresh_token=token["refresh_token"]
        )
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert refreshed["access_token"] != token["access_token"]

        # The client now carries the rotated token, and it works.
        info = await oauth.get(f"{base}/oauth/token/info")
        assert info.status_code == 200
        assert info.json()["merchant"]["handle"] == "authlibstore"
        assert info.json()["scope"] == ["merchants", "products"]

    stale = await http.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": app.client_id,
            "client_secret": app.client_secret,
        },
    )
    assert stale.status_code == 400
    assert stale.json()["error"] == "invalid_grant"


# -- secrets --------------------------------------------------------------------------------------


async def test_no_secret_in_logs_or_errors(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = shopline(live_sandbox)
    params = await authorize(live_sandbox, http)
    # The scripted browser's own DEBUG lines (httpcore2 child loggers) show the callback URL;
    # what matters here is what the provider's calls log.
    caplog.clear()
    grant = await provider.exchange_code(http, params["code"], live_sandbox.redirect_uri(NAME))
    assert grant.refresh_token is not None
    fresh = await provider.refresh(http, grant.refresh_token)
    errors: list[ProviderError] = []
    for attempt in (
        provider.refresh(http, grant.refresh_token),
        provider.exchange_code(http, params["code"], live_sandbox.redirect_uri(NAME)),
        provider.identify(http, grant),
    ):
        with pytest.raises(ProviderError) as caught:
            await attempt
        errors.append(caught.value)
    secrets = [
        sim(live_sandbox).app.client_secret,
        params["code"],
        params["state"],
        grant.access_token,
        grant.refresh_token,
        fresh.access_token,
        fresh.refresh_token,
    ]
    texts = [caplog.text, repr(provider), repr(grant), repr(fresh)]
    texts += [str(e) for e in errors]
    for text in texts:
        for secret in secrets:
            assert secret and secret not in text


# -- the Open API and the refresh's redirect_uri --------------------------------------------------


async def test_open_api_needs_a_user_agent(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    grant = await connect(live_sandbox, http)
    provider = shopline(live_sandbox)
    url = provider.api_url("/token/info")
    assert url == f"{live_sandbox.base_url(NAME)}/v1/token/info"
    signed = await http.get(url, auth=provider.auth(grant.access_token))
    assert signed.status_code == 200, signed.text
    assert signed.json()["merchant"]["_id"] == grant.account_id
    bare = http.build_request("GET", url, headers={"Authorization": f"Bearer {grant.access_token}"})
    del bare.headers["user-agent"]
    refused = await http.send(bare)
    assert refused.status_code == 400 and "User-Agent" in refused.json()["message"]


async def test_refresh_with_the_registered_redirect_uri(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    grant = await connect(live_sandbox, http)
    registered = Shopline(
        shopline(live_sandbox).credentials,
        base_url=live_sandbox.base_url(NAME),
        redirect_uri=live_sandbox.redirect_uri(NAME),
    )
    assert grant.refresh_token
    fresh = await registered.refresh(http, grant.refresh_token)
    assert fresh.refresh_token and fresh.refresh_token != grant.refresh_token
    wrong = Shopline(
        registered.credentials,
        base_url=live_sandbox.base_url(NAME),
        redirect_uri="https://elsewhere.example/cb",
    )
    with pytest.raises(AuthorizationDead) as caught:
        await wrong.refresh(http, fresh.refresh_token)
    assert caught.value.code == "invalid_grant"
    # The refused attempt did not use the refresh token up.
    assert (await registered.refresh(http, fresh.refresh_token)).access_token


# -- webhooks -------------------------------------------------------------------------------------


def test_the_sandbox_signer_matches_the_docs_example() -> None:
    # The docs' worked example, the same vector the provider is tested with.
    signed = shopline_webhook_signature(DOCS_SECRET, DOCS_TIMESTAMP, DOCS_PAYLOAD)
    assert signed == DOCS_SIGN


@pytest.mark.parametrize(
    "payload",
    [
        {"resource": {"price": 1.0, "qty": 10, "big": 2**64, "tiny": 1e-7, "huge": 1e21}},
        {"resource": {"note": 'ü/😀\u2028\x01"\\\t', "10": 1, "9": 2, "\uffff": 3, "😀": 4}},
        {"resource": {"items": [{"b": 1, "a": [{"d": None, "c": True}]}], "empty": {}}},
    ],
)
def test_the_sandbox_and_the_provider_agree(
    live_sandbox: LiveSandbox, payload: dict[str, Any]
) -> None:
    sent = sim(live_sandbox).signed_webhook({"merchant_id": "m-1", **payload})
    read = shopline(live_sandbox).read_webhook(sent.headers, sent.body, query=sent.query)
    assert read.account_id == "m-1" and read.payload == json.loads(sent.body)


async def test_an_uninstall_webhook_revokes_the_merchants_tokens(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    provider = shopline(live_sandbox)
    leaving = await connect(live_sandbox, http, login="leaving-shop")
    again = await connect(live_sandbox, http, login="leaving-shop")
    staying = await connect(live_sandbox, http, login="staying-shop")
    sent = sim(live_sandbox).signed_webhook(
        {"topic": "application/uninstall", "merchant_id": leaving.account_id}
    )
    assert provider.read_webhook(sent.headers, sent.body, query=sent.query).account_id == (
        leaving.account_id
    )
    for gone in (leaving, again):
        with pytest.raises(AuthorizationDead) as revoked:
            await provider.identify(http, gone)
        assert revoked.value.code == "TOKEN_REVOKED"
    assert (await provider.identify(http, staying)).account_id == staying.account_id
    # Installing again works.
    back = await connect(live_sandbox, http, login="leaving-shop")
    assert (await provider.identify(http, back)).account_id == leaving.account_id


async def test_control_route_sends_the_signature_in_the_url(
    live_sandbox: LiveSandbox, http: httpx2.AsyncClient
) -> None:
    received: list[tuple[dict[str, str], bytes, dict[str, str]]] = []

    async def hook(request: Request) -> Response:
        received.append((dict(request.headers), await request.body(), dict(request.query_params)))
        return Response(status_code=200)

    with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as url:
        answer = await http.post(
            live_sandbox.base_url(NAME) + "/_sandbox/webhooks",
            json={"url": url + "/hook?app=1", "payload": {"topic": "order/create"}},
        )
    assert answer.json() == {"delivered": True, "status": 200}
    [(headers, body, query)] = received
    assert set(query) == {"app", "sign"} and query["app"] == "1"
    read = shopline(live_sandbox).read_webhook(headers, body, query=query)
    assert read.event_type == "order/create"
