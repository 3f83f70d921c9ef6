"""Ecwid's pure protocol code: webhook signatures, URLs, grant parsing, error classes, secrecy."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from shopkeys.credentials import AppCredentials
from shopkeys.errors import (
    AuthorizationDead,
    BadCallback,
    NotSupported,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Grant
from shopkeys.providers import get
from shopkeys.providers.ecwid import REST_ERROR_CLASSES, SIGNATURE_HEADER, Ecwid, signature

SECRET = "client-secret-do-not-leak"
ACCESS = "secret_AbCdEfGh12345678"
PUBLIC = "public_ZyXwVu98765432"
CODE = "the-authorization-code"
REDIRECT = "https://app.example/oauth/callback/ecwid"


def provider(**kwargs: Any) -> Ecwid:
    return Ecwid(AppCredentials("my-client", SECRET), **kwargs)


def mock_client(
    handler: Callable[[httpx2.Request], httpx2.Response], seen: list[httpx2.Request] | None = None
) -> httpx2.AsyncClient:
    def record(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(request)
        return handler(request)

    return httpx2.AsyncClient(transport=httpx2.MockTransport(record))


def answer(
    body: Any, status: int = 200, **headers: str
) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if isinstance(body, bytes | str):
            return httpx2.Response(status, content=body, headers=headers)
        return httpx2.Response(status, json=body, headers=headers)

    return handler


TOKEN_BODY = {
    "access_token": ACCESS,
    "token_type": "bearer",
    "scope": "read_store_profile read_catalog public_storefront",
    "store_id": 1003,
    "public_token": PUBLIC,
}


def grant(store_id: str = "1003") -> Grant:
    return Grant(
        provider="ecwid",
        access_token=ACCESS,
        refresh_token=None,
        access_expires_at=None,
        refresh_expires_at=None,
        scopes=["read_store_profile"],
        account_id=store_id,
    )


# -- webhook signatures -------------------------------------------------------------------------


def test_published_webhook_vector() -> None:
    assert (
        signature("abcde123456789", 1234567, "123456-1234-1234-1234-123412341234")
        == "seOLnh4E7fSA59kaKP8pYPaj37xn4s0ZoPfBbfqKOjs="
    )


def test_signature_takes_event_created_as_int_or_string() -> None:
    assert signature("k", 1234567, "e") == signature("k", "1234567", "e")


@pytest.mark.parametrize(
    ("secret", "created", "event_id"),
    [("", 0, ""), ("ключ", 1, "событие-✓"), ("k", 1700000000, "a_b_c")],
)
def test_signature_edge_values_are_base64_sha256(secret: str, created: int, event_id: str) -> None:
    expected = base64.b64encode(
        hmac.new(secret.encode(), f"{created}.{event_id}".encode(), hashlib.sha256).digest()
    ).decode()
    assert signature(secret, created, event_id) == expected
    assert len(base64.b64decode(signature(secret, created, event_id))) == 32


def webhook(secret: str = SECRET, **fields: Any) -> tuple[dict[str, str], bytes]:
    event = {"eventId": "ev-1", "eventCreated": 1700000000, "storeId": 1003, **fields}
    sig = signature(secret, event["eventCreated"], str(event["eventId"]))
    return {SIGNATURE_HEADER: sig}, json.dumps(event).encode()


def test_verify_webhook_accepts_a_signed_event_with_any_header_case() -> None:
    headers, body = webhook()
    assert provider().verify_webhook(headers, body)
    lower = {k.lower(): v for k, v in headers.items()}
    assert provider().verify_webhook(lower, body)


def test_verify_webhook_signature_ignores_the_rest_of_the_body() -> None:
    # Ecwid signs only eventCreated and eventId; other fields are not covered (a platform fact).
    headers, body = webhook(data={"orderId": "A"})
    event = json.loads(body)
    event["data"] = {"orderId": "B"}
    assert provider().verify_webhook(headers, json.dumps(event).encode())


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, webhook()[1]),
        ({SIGNATURE_HEADER: ""}, webhook()[1]),
        (webhook(secret="another secret")[0], webhook()[1]),
        (webhook()[0], json.dumps({"eventId": "ev-2", "eventCreated": 1700000000}).encode()),
        (webhook()[0], b"{not json"),
        (webhook()[0], b"\xff\xfe"),
        (webhook()[0], b"[1, 2]"),
        (webhook()[0], json.dumps({"eventId": "ev-1"}).encode()),
        (webhook()[0], json.dumps({"eventCreated": 1700000000}).encode()),
        (webhook()[0], json.dumps({"eventId": 5, "eventCreated": 1700000000}).encode()),
        (webhook()[0], json.dumps({"eventId": "ev-1", "eventCreated": True}).encode()),
        (webhook()[0], json.dumps({"eventId": "ev-1", "eventCreated": 1.7e9}).encode()),
        ({SIGNATURE_HEADER: "ünïcode"}, webhook()[1]),
    ],
    ids=[
        "no-header",
        "empty-header",
        "other-secret",
        "other-event",
        "malformed-json",
        "not-utf8",
        "json-list",
        "no-created",
        "no-id",
        "numeric-id",
        "bool-created",
        "float-created",
        "non-ascii-header",
    ],
)
def test_verify_webhook_rejects(headers: dict[str, str], body: bytes) -> None:
    assert provider().verify_webhook(headers, body) is False


# -- authorization URL --------------------------------------------------------------------------


def test_authorization_url_has_ecwids_parameters() -> None:
    url = provider().authorization_url("st4te", REDIRECT)
    parts = urlsplit(url)
    assert (
        f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://my.ecwid.com/api/oauth/authorize"
    )
    query = parse_qs(parts.query)
    assert query == {
        "client_id": ["my-client"],
        "redirect_uri": [REDIRECT],
        "response_type": ["code"],
        "scope": ["read_store_profile read_catalog read_orders"],
        "state": ["st4te"],
    }


def test_authorization_url_with_base_url_and_scopes() -> None:
    url = provider(base_url="http://sandbox.test/sandbox/ecwid/").authorization_url(
        "s", REDIRECT, ["read_store_profile", "public_storefront"]
    )
    assert url.startswith("http://sandbox.test/sandbox/ecwid/api/oauth/authorize?")
    assert parse_qs(urlsplit(url).query)["scope"] == ["read_store_profile public_storefront"]


def test_registered_and_flags() -> None:
    assert get("ecwid") is Ecwid
    assert Ecwid.refreshable is False
    # Ecwid tokens never expire, so a missing expiry means just that, and nothing is renewed.
    assert Ecwid.default_access_lifetime is None
    assert Ecwid.renews_refresh_token is False
    assert Ecwid.signs_webhooks is True
    assert provider().api_url("1003", "/profile") == "https://app.ecwid.com/api/v3/1003/profile"


# -- the code exchange --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "store_id", [None, "", "10 03", "1003/../x", "١٠٠٣", "abc", "0123", "1" * 13, "-5"]
)
async def test_exchange_needs_the_callbacks_numeric_store_id(store_id: str | None) -> None:
    seen: list[httpx2.Request] = []
    extra = {} if store_id is None else {"store_id": store_id}
    async with mock_client(answer(TOKEN_BODY), seen) as http:
        with pytest.raises(BadCallback, match="store_id"):
            await provider().exchange_code(http, CODE, REDIRECT, **extra)
    # Nothing is sent: a store id that is not digits never reaches the token URL's path.
    assert seen == []


def test_account_ids_are_store_numbers() -> None:
    assert provider().account_id_problem("1003") is None
    assert provider().account_id_problem("9" * 12) is None
    for bad in ("", "0", "01", "1" * 13, "12a", "1/2"):
        assert provider().account_id_problem(bad) is not None, bad


async def test_identify_never_puts_a_bad_store_id_in_a_path() -> None:
    seen: list[httpx2.Request] = []
    async with mock_client(answer({}), seen) as http:
        with pytest.raises(RequestRejected, match="store id"):
            await provider().identify(http, grant("1003/../../x"))
    assert seen == []


def test_token_url_carries_the_store_id() -> None:
    assert provider().token_url("1003") == "https://my.ecwid.com/api/oauth/token/1003"
    sandboxed = Ecwid(AppCredentials("c", "s"), base_url="http://127.0.0.1:9/sandbox/ecwid")
    assert sandboxed.token_url("7") == "http://127.0.0.1:9/sandbox/ecwid/api/oauth/token/7"


async def test_exchange_posts_a_form_and_parses_a_grant_that_never_expires() -> None:
    seen: list[httpx2.Request] = []
    async with mock_client(answer(TOKEN_BODY), seen) as http:
        result = await provider().exchange_code(http, CODE, REDIRECT, store_id="1003", state="s")
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://my.ecwid.com/api/oauth/token/1003"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "client_id": ["my-client"],
        "client_secret": [SECRET],
        "code": [CODE],
        "redirect_uri": [REDIRECT],
        "grant_type": ["authorization_code"],
    }
    assert result.access_token == ACCESS
    assert result.refresh_token is None
    assert result.access_expires_at is None and result.refresh_expires_at is None
    assert result.access_seconds_left(datetime.now(UTC)) is None
    assert result.scopes == ["read_store_profile", "read_catalog", "public_storefront"]
    assert result.account_id == "1003"
    assert result.account_name is None
    # The storefront token is kept (it cannot be fetched again), but never in `raw`.
    assert result.public_token == PUBLIC
    assert PUBLIC not in repr(result)
    assert result.raw == {
        "token_type": "bearer",
        "scope": "read_store_profile read_catalog public_storefront",
        "store_id": 1003,
    }


@pytest.mark.parametrize("token_type", ["bearer", "Bearer", None])
async def test_exchange_accepts_token_type_in_any_case_or_absent(token_type: str | None) -> None:
    body = {k: v for k, v in TOKEN_BODY.items() if k != "token_type"}
    if token_type is not None:
        body["token_type"] = token_type
    async with mock_client(answer(body)) as http:
        assert (
            await provider().exchange_code(http, CODE, REDIRECT, store_id="1003")
        ).account_id == "1003"


async def test_exchange_with_empty_scope_gives_no_scopes() -> None:
    body = {**TOKEN_BODY, "scope": ""}
    async with mock_client(answer(body)) as http:
        assert (await provider().exchange_code(http, CODE, REDIRECT, store_id="1003")).scopes == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({**TOKEN_BODY, "token_type": "mac"}, 200),
        ({k: v for k, v in TOKEN_BODY.items() if k != "access_token"}, 200),
        ({**TOKEN_BODY, "access_token": 12}, 200),
        ({k: v for k, v in TOKEN_BODY.items() if k != "store_id"}, 200),
        ({**TOKEN_BODY, "store_id": True}, 200),
        ({**TOKEN_BODY, "store_id": 1.5}, 200),
        ({**TOKEN_BODY, "scope": ["a"]}, 200),
        (b"<html>502</html>", 200),
        (b"", 200),
        ([TOKEN_BODY], 200),
    ],
    ids=[
        "token-type",
        "no-token",
        "token-number",
        "no-store",
        "store-bool",
        "store-float",
        "scope-list",
        "html",
        "empty",
        "list",
    ],
)
async def test_malformed_token_responses_are_protocol_errors(body: Any, status: int) -> None:
    async with mock_client(answer(body, status)) as http:
        with pytest.raises(ProtocolError) as caught:
            await provider().exchange_code(http, CODE, REDIRECT, store_id="1003")
    assert caught.value.provider == "ecwid" and caught.value.endpoint == "token"
    assert str(caught.value).startswith("ecwid token: ")


async def test_exchange_refuses_a_token_for_another_store_than_the_callback() -> None:
    async with mock_client(answer(TOKEN_BODY)) as http:
        with pytest.raises(ProtocolError):
            await provider().exchange_code(http, CODE, REDIRECT, store_id="42")


@pytest.mark.parametrize(
    ("body", "status", "kind", "code"),
    [
        (
            {"error": "invalid_grant", "error_description": "used"},
            400,
            AuthorizationDead,
            "invalid_grant",
        ),
        ({"error": "invalid_client"}, 401, RequestRejected, "invalid_client"),
        ({"error": "invalid_request"}, 400, RequestRejected, "invalid_request"),
        ({"error": "unsupported_grant_type"}, 400, RequestRejected, "unsupported_grant_type"),
        ({"error": "method_not_allowed"}, 405, RequestRejected, "method_not_allowed"),
        ({"error": "server_error"}, 400, TemporaryFailure, "server_error"),
        (
            {"errorMessage": "Bad", "errorCode": "WRONG_PARAMETER"},
            400,
            RequestRejected,
            "WRONG_PARAMETER",
        ),
        (
            {"errorMessage": "Gone", "errorCode": "STORE_NOT_FOUND"},
            404,
            AuthorizationDead,
            "STORE_NOT_FOUND",
        ),
        ({"errorMessage": "Unauthorized"}, 401, RequestRejected, None),
        ({}, 400, RequestRejected, None),
    ],
)
async def test_token_errors_are_classified(
    body: dict[str, Any], status: int, kind: type[ProviderError], code: str | None
) -> None:
    async with mock_client(answer(body, status)) as http:
        with pytest.raises(ProviderError) as caught:
            await provider().exchange_code(http, CODE, REDIRECT, store_id="1003")
    assert type(caught.value) is kind
    assert caught.value.code == code and caught.value.status == status


async def test_token_429_and_5xx_by_status() -> None:
    async with mock_client(answer(b"", 429, **{"Retry-After": "30"})) as http:
        with pytest.raises(RateLimited) as limited:
            await provider().exchange_code(http, CODE, REDIRECT, store_id="1003")
    assert limited.value.retry_after == 30
    async with mock_client(answer(b"<html>oops</html>", 503)) as http:
        with pytest.raises(TemporaryFailure):
            await provider().exchange_code(http, CODE, REDIRECT, store_id="1003")


async def test_transport_failures_are_temporary() -> None:
    def broken(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("no route", request=request)

    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    for handler in (broken, slow):
        async with mock_client(handler) as http:
            with pytest.raises(TemporaryFailure) as caught:
                await provider().exchange_code(http, CODE, REDIRECT, store_id="1003")
        assert CODE not in str(caught.value) and "my.ecwid.com" not in str(caught.value)


async def test_a_declined_callback_raises_without_calling_ecwid() -> None:
    seen: list[httpx2.Request] = []
    async with mock_client(answer(TOKEN_BODY), seen) as http:
        with pytest.raises(AuthorizationDead) as caught:
            await provider().exchange_code(http, "", REDIRECT, error="access_denied")
    assert caught.value.code == "access_denied" and seen == []


async def test_refresh_is_not_supported() -> None:
    async with mock_client(answer(TOKEN_BODY)) as http:
        with pytest.raises(NotSupported, match="do not expire"):
            await provider().refresh(http, "anything")


# -- identify -----------------------------------------------------------------------------------

PROFILE = {
    "generalInfo": {"storeId": 1003, "storeUrl": "https://store1003.company.site"},
    "account": {"accountName": "Jane Owner", "accountEmail": "jane@example.com"},
    "settings": {"storeName": "Jane's Shop"},
}


async def test_identify_uses_the_bearer_header_only() -> None:
    seen: list[httpx2.Request] = []
    async with mock_client(answer(PROFILE), seen) as http:
        account = await provider().identify(http, grant())
    request = seen[0]
    assert str(request.url) == "https://app.ecwid.com/api/v3/1003/profile"
    assert request.url.query == b""
    assert request.headers["authorization"] == f"Bearer {ACCESS}"
    assert account.account_id == "1003"
    assert account.name == "Jane's Shop"
    assert [(s.id, s.name) for s in account.shops] == [("1003", "Jane's Shop")]
    assert account.shops[0].extra["store_url"] == "https://store1003.company.site"


@pytest.mark.parametrize(
    ("profile", "name"),
    [
        ({**PROFILE, "settings": {}}, "Jane Owner"),
        ({"generalInfo": PROFILE["generalInfo"]}, "https://store1003.company.site"),
        ({"generalInfo": {"storeId": "1003"}}, None),
    ],
)
async def test_identify_name_falls_back(profile: dict[str, Any], name: str | None) -> None:
    async with mock_client(answer(profile)) as http:
        assert (await provider().identify(http, grant())).name == name


@pytest.mark.parametrize(
    "profile",
    [
        {"settings": {"storeName": "x"}},
        {"generalInfo": []},
        {"generalInfo": {"storeId": 77}},
        {"generalInfo": {"storeId": None}},
        {**PROFILE, "settings": "closed"},
        {**PROFILE, "settings": {"storeName": {"en": "x"}}},
    ],
    ids=["no-general", "general-list", "other-store", "store-null", "settings-text", "name-object"],
)
async def test_malformed_profiles_are_protocol_errors(profile: dict[str, Any]) -> None:
    async with mock_client(answer(profile)) as http:
        with pytest.raises(ProtocolError) as caught:
            await provider().identify(http, grant())
    assert str(caught.value).startswith("ecwid profile: ")


async def test_identify_html_answer_is_a_protocol_error() -> None:
    async with mock_client(answer(b"<html></html>", 200, **{"content-type": "text/html"})) as http:
        with pytest.raises(ProtocolError, match="text/html"):
            await provider().identify(http, grant())


# -- REST error classification ------------------------------------------------------------------

REST_CASES = [
    ("INVALID_API_TOKEN", 403, AuthorizationDead),
    ("STORE_NOT_FOUND", 404, AuthorizationDead),
    ("INSUFFICIENT_APP_SCOPE", 403, RequestRejected),
    ("NOT_AVAILABLE_ON_CURRENT_PLAN", 402, RequestRejected),
    ("STORE_IS_SUSPENDED", 402, RequestRejected),
    ("RATE_LIMITED", 429, RateLimited),
    ("TIMEOUT", 408, TemporaryFailure),
    ("INTERNAL_ERROR", 500, TemporaryFailure),
    ("WRONG_PARAMETER", 400, RequestRejected),
    ("PROFILE_NOT_FOUND", 404, RequestRejected),
    ("METHOD_NOT_ALLOWED", 405, RequestRejected),
    ("SOMETHING_NEW", 409, RequestRejected),
    ("SOMETHING_NEW", 503, TemporaryFailure),
]


def test_every_listed_code_is_tested() -> None:
    assert set(REST_ERROR_CLASSES) <= {code for code, _, _ in REST_CASES}


@pytest.mark.parametrize(("code", "status", "kind"), REST_CASES)
async def test_rest_error_codes(code: str, status: int, kind: type[ProviderError]) -> None:
    body = {"errorMessage": f"message for {code}", "errorCode": code}
    headers = {"Retry-After": "12"} if status == 429 else {}
    response = httpx2.Response(status, json=body, headers=headers)
    error = provider().classify(response, "orders")
    assert type(error) is kind
    assert error is not None and error.code == code and error.status == status
    assert error.endpoint == "orders" and error.detail == f"message for {code}"
    if kind is RateLimited:
        assert isinstance(error, RateLimited) and error.retry_after == 12
    # identify raises the same class
    async with mock_client(answer(body, status, **headers)) as http:
        with pytest.raises(kind):
            await provider().identify(http, grant())


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (403, b"", AuthorizationDead),
        (401, b"", AuthorizationDead),
        (404, b"", RequestRejected),
        (402, b"Please upgrade your account to access API", RequestRejected),
        (429, b"", RateLimited),
        (502, b"<html>bad gateway</html>", TemporaryFailure),
        (408, b"", TemporaryFailure),
    ],
)
def test_rest_errors_without_a_json_body(
    status: int, body: bytes, kind: type[ProviderError]
) -> None:
    response = httpx2.Response(status, content=body, headers={"Retry-After": "5"})
    error = provider().classify(response)
    assert type(error) is kind and error is not None and error.code is None
    if isinstance(error, RateLimited):
        assert error.retry_after == 5


def test_classify_success_is_none() -> None:
    assert provider().classify(httpx2.Response(200, json={})) is None


def test_rest_error_with_non_string_fields() -> None:
    error = provider().classify(httpx2.Response(403, json={"errorCode": 5, "errorMessage": None}))
    assert type(error) is AuthorizationDead and error is not None and error.code is None


# -- secrets ------------------------------------------------------------------------------------


async def test_secrets_stay_out_of_reprs_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ecwid = provider()
    assert SECRET not in repr(ecwid)
    async with mock_client(answer(TOKEN_BODY)) as http:
        result = await ecwid.exchange_code(http, CODE, REDIRECT, store_id="1003")
    assert ACCESS not in repr(result) and PUBLIC not in repr(result)
    errors: list[ProviderError] = []
    for body, status in [
        ({"error": "invalid_grant", "error_description": "bad"}, 400),
        ({"errorCode": "INVALID_API_TOKEN", "errorMessage": "Invalid token"}, 403),
        (b"<html></html>", 200),
    ]:
        async with mock_client(answer(body, status)) as http:
            with pytest.raises(ProviderError) as caught:
                await ecwid.exchange_code(http, CODE, REDIRECT, store_id="1003")
            errors.append(caught.value)
            with pytest.raises(ProviderError) as caught:
                await ecwid.identify(http, result)
            errors.append(caught.value)
    for text in [caplog.text, *(str(e) for e in errors), *(repr(e) for e in errors)]:
        for secret in (SECRET, ACCESS, PUBLIC, CODE):
            assert secret not in text


@pytest.mark.parametrize("body", [b"", b"<html>Bad Request</html>", b"[]"])
async def test_token_4xx_without_an_error_body_is_rejected(body: bytes) -> None:
    async with mock_client(answer(body, 400)) as http:
        with pytest.raises(RequestRejected) as caught:
            await provider().exchange_code(http, CODE, REDIRECT, store_id="1003")
    assert caught.value.status == 400
