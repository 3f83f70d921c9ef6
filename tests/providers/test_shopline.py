"""SHOPLINE's protocol code against canned answers (httpx2.MockTransport)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
from shopkeys.providers import AppCredentials, get
from shopkeys.providers.shopline import Shopline

CLIENT_ID = "client-id-123"
SECRET = "very-secret-client-secret"
ACCESS = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA"
REFRESH = "bc2c3d3f1ce8776d2f358e74683e275d68dc8fea2c78a2c2080d9014c5730879"
CODE = "69a801d873305eca0245ef951687c491bf81a79421b10a4f42743b1ff3e85da0"
MERCHANT = "5f0bda5e4e5fca0010c81fef"
REDIRECT = "https://app.example/oauth/callback/shopline"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

# The example response in SHOPLINE's "Token Exchange" guide, with our own token values.
TOKEN_BODY: dict[str, Any] = {
    "access_token": ACCESS,
    "token_type": "Bearer",
    "expires_in": 15778476,
    "refresh_token": REFRESH,
    "scope": "products orders",
    "created_at": 1678956849,
    "resource_owner_id": MERCHANT,
}

INFO_BODY: dict[str, Any] = {
    "resource_owner_id": MERCHANT,
    "scope": ["customers", "orders", "products"],
    "expires_in": 15551707,
    "application": {"uid": CLIENT_ID},
    "created_at": 1593655421,
    "staff": {"_id": "5c403b6c30b63c0008f46d05", "name": "Staff", "merchant_ids": [MERCHANT]},
    "merchant": {
        "_id": MERCHANT,
        "email": "owner@example.com",
        "handle": "turnturn",
        "name": "Home cook好",
    },
}

Handler = Callable[[httpx2.Request], httpx2.Response]


def provider(**kwargs: Any) -> Shopline:
    return Shopline(AppCredentials(CLIENT_ID, SECRET), clock=lambda: NOW, **kwargs)


def client(handler: Handler) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


def answer(body: Any, status: int = 200, **headers: str) -> Handler:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body, headers=headers)

    return handler


async def exchange(handler: Handler) -> Grant:
    async with client(handler) as http:
        return await provider().exchange_code(http, CODE, REDIRECT)


# -- registry and authorization URL -------------------------------------------------------------


def test_registered_under_its_name() -> None:
    assert get("shopline") is Shopline
    assert Shopline.refreshable and Shopline.signs_webhooks
    # Each refresh issues a new pair, whose refresh token dies a day after the new access token.
    assert Shopline.renews_refresh_token is True


def test_authorization_url_has_the_doorkeeper_parameters() -> None:
    url = provider().authorization_url("st-ä t&e", REDIRECT)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://developers.shoplineapp.com/oauth/authorize"
    )
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "merchants products orders",
        "state": "st-ä t&e",
    }


def test_authorization_url_with_own_scopes_and_base_url() -> None:
    shopline = provider(base_url="http://127.0.0.1:9/sandbox/shopline/", scopes=["customers"])
    url = shopline.authorization_url("s", REDIRECT, scopes=["orders", "order_items"])
    assert url.startswith("http://127.0.0.1:9/sandbox/shopline/oauth/authorize?")
    assert parse_qs(urlsplit(url).query)["scope"] == ["orders order_items"]
    assert "scope=customers" in shopline.authorization_url("s", REDIRECT)


def test_authorization_url_without_scopes_leaves_scope_out() -> None:
    url = provider(scopes=[]).authorization_url("s", REDIRECT)
    assert "scope" not in parse_qs(urlsplit(url).query)


def test_redirect_uri_with_a_query_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        provider().authorization_url("s", REDIRECT + "?next=/")


# -- grants ---------------------------------------------------------------------------------------


async def test_exchange_sends_the_documented_json_body() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=TOKEN_BODY)

    await exchange(handler)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://developers.shoplineapp.com/oauth/token"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "code": CODE,
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
    }
    assert not request.url.query  # no secret in the URL


async def test_grant_expiry_counts_from_created_at_not_from_now() -> None:
    grant = await exchange(answer(TOKEN_BODY))
    issued = datetime.fromtimestamp(1678956849, UTC)
    assert grant.access_expires_at == issued + timedelta(seconds=15778476)
    assert grant.access_expires_at == datetime(2023, 9, 14, 23, 48, 45, tzinfo=UTC)
    assert grant.refresh_expires_at == grant.access_expires_at + timedelta(days=1)
    assert grant.access_expires_at.tzinfo is not None
    assert grant.access_token == ACCESS
    assert grant.refresh_token == REFRESH
    assert grant.scopes == ["products", "orders"]
    assert grant.account_id == MERCHANT
    assert grant.account_name is None
    assert grant.provider == "shopline"
    assert grant.raw == {
        "token_type": "Bearer",
        "expires_in": 15778476,
        "scope": "products orders",
        "created_at": 1678956849,
        "resource_owner_id": MERCHANT,
    }


async def test_grant_without_created_at_counts_from_the_clock() -> None:
    body = {k: v for k, v in TOKEN_BODY.items() if k != "created_at"} | {"expires_in": 60}
    grant = await exchange(answer(body))
    assert grant.access_expires_at == NOW + timedelta(seconds=60)


@pytest.mark.parametrize("call", ["exchange", "refresh"])
async def test_oauth_grant_without_expires_in_lives_the_documented_lifetime(
    call: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {k: v for k, v in TOKEN_BODY.items() if k != "expires_in"}
    async with client(answer(body)) as http:
        p = provider()
        grant = await (
            p.exchange_code(http, CODE, REDIRECT)
            if call == "exchange"
            else p.refresh(http, REFRESH)
        )
    # A grant with a refresh token is an OAuth app's, whose tokens expire: counted from issue.
    assert Shopline.default_access_lifetime == timedelta(seconds=15778476)
    issued = datetime.fromtimestamp(1678956849, UTC)
    assert grant.access_expires_at == issued + timedelta(seconds=15778476)
    assert grant.refresh_expires_at == grant.access_expires_at + timedelta(days=1)
    assert "assuming the documented lifetime of 182.6 days" in caplog.text
    for secret in (SECRET, CODE, ACCESS, REFRESH):
        assert secret not in caplog.text


async def test_oauth_grant_without_expires_in_or_created_at_counts_from_the_clock() -> None:
    body = {k: v for k, v in TOKEN_BODY.items() if k not in ("expires_in", "created_at")}
    grant = await exchange(answer(body))
    assert grant.access_expires_at == NOW + timedelta(seconds=15778476)
    assert grant.refresh_expires_at == NOW + timedelta(seconds=15778476, days=1)


async def test_grant_without_expires_in_or_refresh_token_never_expires(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A token with nothing to refresh (a staff-generated one) may really be non-expiring.
    caplog.set_level(logging.DEBUG)
    body = {k: v for k, v in TOKEN_BODY.items() if k not in ("expires_in", "refresh_token")}
    grant = await exchange(answer(body))
    assert grant.refresh_token is None
    assert grant.access_expires_at is None
    assert grant.refresh_expires_at is None
    assert "assuming" not in caplog.text


async def test_grant_without_refresh_token_has_no_refresh_expiry() -> None:
    body = {k: v for k, v in TOKEN_BODY.items() if k != "refresh_token"} | {"scope": ""}
    grant = await exchange(answer(body))
    assert grant.refresh_token is None
    assert grant.refresh_expires_at is None
    assert grant.scopes == []


async def test_refresh_sends_json_and_reads_the_merchant_when_no_owner_id() -> None:
    seen: list[dict[str, Any]] = []
    body = {k: v for k, v in TOKEN_BODY.items() if k != "resource_owner_id"}
    body["merchant"] = {"_id": MERCHANT, "handle": "h", "name": "Ünïcode Store", "email": "e@x"}

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        return httpx2.Response(200, json=body)

    async with client(handler) as http:
        grant = await provider().refresh(http, REFRESH)
    assert seen == [
        {
            "grant_type": "refresh_token",
            "refresh_token": REFRESH,
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
        }
    ]
    assert grant.account_id == MERCHANT
    assert grant.account_name == "Ünïcode Store"


async def test_refresh_carries_the_registered_redirect_uri() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=TOKEN_BODY)

    async with client(handler) as http:
        await provider(redirect_uri=REDIRECT).refresh(http, REFRESH)
    sent = json.loads(seen[0].content)
    assert sent["redirect_uri"] == REDIRECT and sent["grant_type"] == "refresh_token"
    # Secrets travel in the body, never in the URL (the docs' example puts them in the query).
    assert seen[0].url.query == b"" and REFRESH not in str(seen[0].url)


def test_open_api_host_and_version() -> None:
    assert provider().api_url("/products") == "https://open.shopline.io/v1/products"
    sandboxed = provider(base_url="http://127.0.0.1:9/sandbox/shopline")
    assert sandboxed.api_url("/token/info") == "http://127.0.0.1:9/sandbox/shopline/v1/token/info"


def test_signed_requests_carry_a_user_agent() -> None:
    default = httpx2.Client().build_request("GET", provider().api_url("/products"))
    signed = provider().sign_request(default, ACCESS)
    assert signed.headers["authorization"] == f"Bearer {ACCESS}"
    assert signed.headers["user-agent"].startswith("shopkeys/")
    # An app's own User-Agent (SHOPLINE asks for the app's handle) is kept.
    own = httpx2.Request("GET", provider().api_url("/products"), headers={"User-Agent": "acme"})
    assert provider().sign_request(own, ACCESS).headers["user-agent"] == "acme"
    bare = httpx2.Request("GET", provider().api_url("/products"))
    assert provider().sign_request(bare, ACCESS).headers["user-agent"].startswith("shopkeys/")


async def test_lowercase_bearer_and_list_scope_are_accepted() -> None:
    grant = await exchange(answer(TOKEN_BODY | {"token_type": "bearer", "scope": ["a", "b"]}))
    assert grant.scopes == ["a", "b"]


async def test_numeric_owner_id_becomes_a_string() -> None:
    grant = await exchange(answer(TOKEN_BODY | {"resource_owner_id": 12345}))
    assert grant.account_id == "12345"


# -- errors ---------------------------------------------------------------------------------------

TOKEN_ERRORS = [
    ("invalid_grant", 400, AuthorizationDead),
    ("access_denied", 400, AuthorizationDead),
    ("invalid_request", 400, RequestRejected),
    ("invalid_client", 401, RequestRejected),
    ("unauthorized_client", 403, RequestRejected),
    ("unsupported_grant_type", 400, RequestRejected),
    ("unsupported_response_type", 400, RequestRejected),
    ("invalid_scope", 400, RequestRejected),
    ("invalid_redirect_uri", 400, RequestRejected),
    ("temporarily_unavailable", 400, TemporaryFailure),
    ("server_error", 400, TemporaryFailure),
    ("invalid_token", 401, AuthorizationDead),
    ("TOKEN_EXPIRED", 401, AccessExpired),
    ("TOKEN_REVOKED", 401, AuthorizationDead),
    ("MISSING_TOKEN_ERROR", 401, RequestRejected),
    ("something_new", 400, RequestRejected),
]


@pytest.mark.parametrize(("code", "status", "kind"), TOKEN_ERRORS)
async def test_token_error_codes(code: str, status: int, kind: type[ProviderError]) -> None:
    if kind is AccessExpired:
        # From the token endpoint no access token was presented: the grant itself is gone.
        kind = AuthorizationDead
    body = {"error": code, "error_description": "what happened"}
    with pytest.raises(kind) as caught:
        await exchange(answer(body, status))
    error = caught.value
    assert type(error) is kind
    assert (error.code, error.status, error.provider, error.endpoint) == (
        code,
        status,
        "shopline",
        "token",
    )
    assert error.detail == "what happened"


@pytest.mark.parametrize(("code", "status", "kind"), TOKEN_ERRORS)
async def test_token_info_error_codes(code: str, status: int, kind: type[ProviderError]) -> None:
    async with client(answer({"error": code, "error_description": "x"}, status)) as http:
        with pytest.raises(kind) as caught:
            await provider().identify(http, await exchange(answer(TOKEN_BODY)))
    assert caught.value.code == code
    assert caught.value.endpoint == "token_info"


async def test_token_expired_from_a_refresh_is_a_dead_grant() -> None:
    body = {"error": "TOKEN_EXPIRED", "error_description": "expired"}
    async with client(answer(body, 401)) as http:
        with pytest.raises(AuthorizationDead) as caught:
            await provider().refresh(http, REFRESH)
    assert type(caught.value) is AuthorizationDead and caught.value.endpoint == "refresh"


async def test_error_under_a_code_key_is_classified() -> None:
    async with client(answer({"code": "TOKEN_EXPIRED", "message": "expired"}, 401)) as http:
        with pytest.raises(AccessExpired, match="expired"):
            await provider().identify(http, await exchange(answer(TOKEN_BODY)))


async def test_doorkeeper_dict_description_falls_back_to_the_code() -> None:
    body = {"error": "invalid_request", "error_description": {"unknown": "x", "missing": "y"}}
    with pytest.raises(RequestRejected) as caught:
        await exchange(answer(body, 400))
    assert caught.value.detail == "invalid_request"


async def test_bare_4xx_without_error_code_is_rejected() -> None:
    with pytest.raises(RequestRejected) as caught:
        await exchange(answer({"message": "nope"}, 403))
    assert caught.value.status == 403
    assert caught.value.detail == "nope"


async def test_rate_limited_carries_retry_after() -> None:
    with pytest.raises(RateLimited) as caught:
        await exchange(answer({}, 429, **{"Retry-After": "7"}))
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_temporary(status: int) -> None:
    with pytest.raises(TemporaryFailure) as caught:
        await exchange(answer({"error": "server_error"}, status))
    assert not isinstance(caught.value, ProtocolError)
    assert caught.value.status == status


@pytest.mark.parametrize(
    "exc", [httpx2.ConnectError, httpx2.ReadTimeout, httpx2.RemoteProtocolError]
)
async def test_transport_failures_are_temporary(exc: type[Exception]) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc(f"failed for {request.url}", request=request)  # type: ignore[call-arg]

    with pytest.raises(TemporaryFailure) as caught:
        await exchange(handler)
    assert CODE not in str(caught.value)
    assert SECRET not in str(caught.value)


def _html(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, text="<html>502</html>", headers={"content-type": "text/html"})


MALFORMED: list[Any] = [
    _html,
    answer([TOKEN_BODY]),
    answer({k: v for k, v in TOKEN_BODY.items() if k != "access_token"}),
    answer(TOKEN_BODY | {"access_token": ""}),
    answer(TOKEN_BODY | {"access_token": 5}),
    answer({k: v for k, v in TOKEN_BODY.items() if k != "token_type"}),
    answer(TOKEN_BODY | {"token_type": "mac"}),
    answer(TOKEN_BODY | {"expires_in": "soon"}),
    answer(TOKEN_BODY | {"expires_in": True}),
    answer(TOKEN_BODY | {"created_at": "yesterday"}),
    answer(TOKEN_BODY | {"refresh_token": ["x"]}),
    answer(TOKEN_BODY | {"scope": 3}),
    answer(TOKEN_BODY | {"scope": ["a", 1]}),
    answer({k: v for k, v in TOKEN_BODY.items() if k != "resource_owner_id"}),
    answer(TOKEN_BODY | {"resource_owner_id": None}),
    answer(TOKEN_BODY | {"merchant": "not an object"}),
]


@pytest.mark.parametrize("handler", MALFORMED)
async def test_malformed_token_responses_are_protocol_errors(handler: Handler) -> None:
    with pytest.raises(ProtocolError) as caught:
        await exchange(handler)
    assert caught.value.provider == "shopline"
    assert caught.value.endpoint == "token"
    assert str(caught.value).startswith("shopline token: ")


@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in INFO_BODY.items() if k != "merchant"},
        INFO_BODY | {"merchant": {"name": "no id"}},
        INFO_BODY | {"merchant": {"_id": MERCHANT, "name": ["x"]}},
        INFO_BODY | {"scope": "not-a-list-but-fine"} | {"merchant": []},
    ],
)
async def test_malformed_token_info_is_a_protocol_error(body: dict[str, Any]) -> None:
    grant = await exchange(answer(TOKEN_BODY))
    async with client(answer(body)) as http:
        with pytest.raises(ProtocolError) as caught:
            await provider().identify(http, grant)
    assert caught.value.endpoint == "token_info"


# -- identify and revoke --------------------------------------------------------------------------


async def test_identify_reads_the_merchant() -> None:
    grant = await exchange(answer(TOKEN_BODY))
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=INFO_BODY)

    async with client(handler) as http:
        account = await provider().identify(http, grant)
    assert str(seen[0].url) == "https://developers.shoplineapp.com/oauth/token/info"
    assert seen[0].method == "GET"
    assert seen[0].headers["authorization"] == f"Bearer {ACCESS}"
    assert account.account_id == MERCHANT
    assert account.name == "Home cook好"
    assert len(account.shops) == 1
    shop = account.shops[0]
    assert (shop.id, shop.name) == (MERCHANT, "Home cook好")
    assert shop.extra == {"handle": "turnturn", "email": "owner@example.com"}
    assert account.extra == {"scopes": ["customers", "orders", "products"], "handle": "turnturn"}


async def test_revoke_uses_basic_auth_and_a_json_body() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={})

    async with client(handler) as http:
        await provider().revoke(http, ACCESS)
    (request,) = seen
    assert str(request.url) == "https://developers.shoplineapp.com/oauth/revoke"
    expected = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert json.loads(request.content) == {"token": ACCESS}


async def test_revoke_refused_is_rejected() -> None:
    body = {"error": "unauthorized_client", "error_description": "You are not authorized"}
    async with client(answer(body, 403)) as http:
        with pytest.raises(RequestRejected) as caught:
            await provider().revoke(http, ACCESS)
    assert caught.value.endpoint == "revoke"


async def test_revoke_rate_limited() -> None:
    async with client(answer({}, 429)) as http:
        with pytest.raises(RateLimited) as caught:
            await provider().revoke(http, ACCESS)
    assert caught.value.retry_after is None


async def test_denied_callback_raises_without_calling_the_platform() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError("no request expected")

    async with client(handler) as http:
        with pytest.raises(AuthorizationDead) as caught:
            await provider().exchange_code(
                http,
                "",
                REDIRECT,
                error="access_denied",
                error_description="The resource owner denied the request.",
                state="xyz",
            )
    assert caught.value.code == "access_denied"
    assert caught.value.endpoint == "authorize"


# -- secrets --------------------------------------------------------------------------------------


async def test_secrets_stay_out_of_reprs_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    shopline = provider()
    grant = await exchange(answer(TOKEN_BODY))
    errors: list[Exception] = []
    for handler in (answer({"error": "invalid_grant"}, 400), answer({}, 500), _html):
        async with client(handler) as http:
            for call in (
                shopline.exchange_code(http, CODE, REDIRECT),
                shopline.refresh(http, REFRESH),
                shopline.identify(http, grant),
                shopline.revoke(http, ACCESS),
            ):
                with pytest.raises(ProviderError) as caught:
                    await call
                errors.append(caught.value)
    texts = [repr(shopline), repr(grant), repr(grant.raw), caplog.text]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    for text in texts:
        for secret in (SECRET, ACCESS, REFRESH, CODE):
            assert secret not in text
