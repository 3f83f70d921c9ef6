"""AliExpress: signing, token parsing and error classification, without a network."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

from shopkeys.credentials import AppCredentials
from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.providers import get
from shopkeys.providers.aliexpress import AliExpress, ban_seconds, epoch_millis, sign

SECRET = "unit-test-app-secret-value"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CODE = "3_500100_abcdefGHIJ0123456789"
ACCESS = "50000access-token-value-xyz"
REFRESH = "50001refresh-token-value-xyz"


def provider(base_url: str | None = None) -> AliExpress:
    return AliExpress(AppCredentials("500100", SECRET), base_url=base_url, clock=lambda: NOW)


def token_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "expires_in": 86400,
        "refresh_expires_in": 172800,
        "expire_time": int((NOW + timedelta(days=1)).timestamp() * 1000),
        "refresh_token_valid_time": int((NOW + timedelta(days=2)).timestamp() * 1000),
        "user_id": "2000000001",
        "seller_id": "2000000002",
        "havana_id": "1234567890123",
        "account_id": "2000000003",
        "account": "seller@example.com",
        "account_platform": "seller_center",
        "user_nick": "cn1234567",
        "locale": "en_US",
        "sp": "ae",
        "code": "0",
        "request_id": "2101abcd",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def client(handler: Callable[[httpx2.Request], httpx2.Response]) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


def answer(
    body: Any, status: int = 200, **kwargs: Any
) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body, **kwargs)

    return handler


def form(request: httpx2.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode(), keep_blank_values=True))


# -- signing ----------------------------------------------------------------------------------


# The published example is checked against this `sign` and the sandbox's own in
# tests/sandbox/test_signatures.py.


def test_sign_param_itself_is_not_signed() -> None:
    params = {"app_key": "1", "timestamp": "2"}
    assert sign("s", "/a/b", {**params, "sign": "ANYTHING"}) == sign("s", "/a/b", params)


def test_business_api_gets_no_prefix() -> None:
    import hashlib
    import hmac

    params = {"method": "aliexpress.ds.product.get", "app_key": "1"}
    message = "app_key1methodaliexpress.ds.product.get"
    expected = hmac.new(b"s", message.encode(), hashlib.sha256).hexdigest().upper()
    assert sign("s", "aliexpress.ds.product.get", params) == expected
    assert sign("s", "/aliexpress.ds.product.get", params) != expected


def test_empty_values_and_unicode() -> None:
    import hashlib
    import hmac

    params = {"b": "", "a": "Grüße 你好"}
    message = "/x/ya" + "Grüße 你好" + "b"
    expected = hmac.new("sé".encode(), message.encode(), hashlib.sha256).hexdigest().upper()
    assert sign("sé", "/x/y", params) == expected


def test_keys_sort_in_byte_order_with_underscores() -> None:
    import hashlib
    import hmac

    # "_" (0x5F) sorts after upper case and before lower case letters.
    params = {"a_b": "1", "ab": "2", "aB": "3", "a": "4"}
    message = "a4aB3a_b1ab2"
    expected = hmac.new(b"k", message.encode(), hashlib.sha256).hexdigest().upper()
    assert sign("k", "method.name", params) == expected


def test_signature_is_uppercase_hex() -> None:
    value = sign("k", "/a", {"x": "y"})
    assert len(value) == 64 and value == value.upper()
    int(value, 16)


# -- authorization URL ------------------------------------------------------------------------


def test_authorization_url() -> None:
    url = provider().authorization_url("st4te", "https://app.example/cb?x=1", scopes=["ignored"])
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://api-sg.aliexpress.com/oauth/authorize"
    )
    assert dict(parse_qsl(parts.query)) == {
        "response_type": "code",
        "force_auth": "true",
        "client_id": "500100",
        "redirect_uri": "https://app.example/cb?x=1",
        "state": "st4te",
    }


def test_authorization_url_under_base_url() -> None:
    url = provider("http://h/sandbox/aliexpress/").authorization_url("s", "r")
    assert url.startswith("http://h/sandbox/aliexpress/oauth/authorize?")


# -- token calls ------------------------------------------------------------------------------


async def test_exchange_code_sends_the_sdk_shape_and_parses_the_grant() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=token_body())

    async with client(handler) as http:
        grant = await provider().exchange_code(http, CODE, "https://ignored")
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "https://api-sg.aliexpress.com/rest"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    params = form(request)
    assert params["method"] == "/auth/token/create"
    assert params["code"] == CODE
    assert params["app_key"] == "500100"
    assert params["sign_method"] == "sha256"
    assert params["timestamp"] == str(int(NOW.timestamp() * 1000))
    assert params["simplify"] == "false" and params["format"] == "json"
    assert params["partner_id"]
    assert params["sign"] == sign(SECRET, "/auth/token/create", params)

    assert grant.provider == "aliexpress"
    assert grant.access_token == ACCESS and grant.refresh_token == REFRESH
    assert grant.access_expires_at == NOW + timedelta(days=1)
    assert grant.refresh_expires_at == NOW + timedelta(days=2)
    assert grant.access_expires_at.tzinfo is not None
    assert grant.account_id == "2000000002"
    assert grant.account_name == "cn1234567"
    assert grant.scopes == []
    assert "access_token" not in grant.raw and "refresh_token" not in grant.raw
    assert grant.raw["seller_id"] == "2000000002"


async def test_refresh_sends_the_refresh_token() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=token_body(refresh_token="50001newer"))

    async with client(handler) as http:
        grant = await provider().refresh(http, REFRESH)
    params = form(seen[0])
    assert params["method"] == "/auth/token/refresh"
    assert params["refresh_token"] == REFRESH
    assert "code" not in params
    assert params["sign"] == sign(SECRET, "/auth/token/refresh", params)
    assert grant.refresh_token == "50001newer"


async def test_absolute_expiries_win_over_durations() -> None:
    body = token_body(expires_in=10, refresh_expires_in=20)
    async with client(answer(body)) as http:
        grant = await provider().exchange_code(http, CODE, "r")
    assert grant.access_expires_at == NOW + timedelta(days=1)
    assert grant.refresh_expires_at == NOW + timedelta(days=2)


async def test_durations_in_seconds_when_absolute_ones_are_missing() -> None:
    body = token_body(expire_time=None, refresh_token_valid_time=None, expires_in="3600")
    async with client(answer(body)) as http:
        grant = await provider().exchange_code(http, CODE, "r")
    assert grant.access_expires_at == NOW + timedelta(hours=1)
    assert grant.refresh_expires_at == NOW + timedelta(days=2)


async def test_no_refresh_expiry_stated() -> None:
    body = token_body(refresh_token_valid_time=None, refresh_expires_in=None)
    async with client(answer(body)) as http:
        grant = await provider().exchange_code(http, CODE, "r")
    assert grant.refresh_expires_at is None


@pytest.mark.parametrize("call", ["exchange", "refresh"])
async def test_no_access_expiry_stated_assumes_the_documented_30_days(
    call: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = token_body(expire_time=None, expires_in=None)
    async with client(answer(body)) as http:
        p = provider()
        grant = await (
            p.exchange_code(http, CODE, "r") if call == "exchange" else p.refresh(http, REFRESH)
        )
    assert AliExpress.default_access_lifetime == timedelta(days=30)
    assert grant.access_expires_at == NOW + timedelta(days=30)
    # The refresh token's stated expiry is read as always.
    assert grant.refresh_token == REFRESH
    assert grant.refresh_expires_at == NOW + timedelta(days=2)
    # The assumption is logged, and nothing secret with it.
    assert "assuming the documented lifetime of 30.0 days" in caplog.text
    for secret in (SECRET, CODE, ACCESS, REFRESH):
        assert secret not in caplog.text


async def test_no_access_expiry_without_a_refresh_token_still_expires() -> None:
    # A grant that cannot be refreshed expires all the same: it only cannot be renewed.
    body = token_body(expire_time=None, expires_in=None, refresh_token_valid_time=None)
    body["refresh_expires_in"] = 0
    async with client(answer(body)) as http:
        grant = await provider().exchange_code(http, CODE, "r")
    assert grant.refresh_token is None and grant.refresh_expires_at is None
    assert grant.access_expires_at == NOW + timedelta(days=30)


async def test_a_stated_access_expiry_is_not_replaced_by_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client(answer(token_body())) as http:
        grant = await provider().exchange_code(http, CODE, "r")
    assert grant.access_expires_at == NOW + timedelta(days=1)
    assert "assuming" not in caplog.text


async def test_account_falls_back_to_user_id_and_numbers() -> None:
    body = token_body(seller_id=None, user_id=2000000001, user_nick=None)
    async with client(answer(body)) as http:
        grant = await provider().exchange_code(http, CODE, "r")
    assert grant.account_id == "2000000001"
    assert grant.account_name is None


# -- errors -----------------------------------------------------------------------------------


#: Each error code the gateway answers with, its error type, and what the client makes of it
#: (the simulator's test, tests/sandbox/test_aliexpress_sandbox.py, has it send each of them).
ERRORS: list[tuple[str, str, type[ProviderError]]] = [
    ("MissingParameter", "ISV", RequestRejected),
    ("IncompleteSignature", "ISV", RequestRejected),
    ("InvalidCode", "ISV", AuthorizationDead),
    ("IllegalRefreshToken", "ISV", AuthorizationDead),
    ("IllegalAccessToken", "ISV", AccessExpired),
    ("InvalidAppKey", "ISV", RequestRejected),
    ("ApiCallLimit", "ISV", RateLimited),
    ("AUTH_TYPE_UNSUPPORTED", "ISV", RequestRejected),
    ("ServiceUnavailable", "ISP", TemporaryFailure),
    ("InternalError", "SYSTEM", TemporaryFailure),
    ("InvalidTimestamp", "ISV", RequestRejected),
]


@pytest.mark.parametrize(("code", "type_", "kind"), ERRORS)
async def test_every_error_code_has_its_class(
    code: str, type_: str, kind: type[ProviderError]
) -> None:
    body = {"type": type_, "code": code, "message": "refused", "request_id": "1"}
    async with client(answer(body)) as http:
        with pytest.raises(kind) as caught:
            await provider().refresh(http, REFRESH)
    assert type(caught.value) is kind
    assert caught.value.code == code
    assert caught.value.provider == "aliexpress"
    assert caught.value.endpoint == "/auth/token/refresh"


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("The request has exceeded the limit. This ban will last 7 more seconds", 7.0),
        ("ban will last 1 more second", 1.0),
        ("wait 2.5s", 2.5),
        ("slow down", None),
    ],
)
async def test_rate_limit_reads_the_ban_from_the_message(
    message: str, seconds: float | None
) -> None:
    assert ban_seconds(message) == seconds
    body = {"type": "ISV", "code": "ApiCallLimit", "message": message}
    async with client(answer(body)) as http:
        with pytest.raises(RateLimited) as caught:
            await provider().exchange_code(http, CODE, "r")
    assert caught.value.retry_after == seconds


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("ISP", TemporaryFailure), ("SYSTEM", TemporaryFailure), ("ISV", RequestRejected)],
)
async def test_unknown_codes_by_error_type(kind: str, expected: type[ProviderError]) -> None:
    body = {"type": kind, "code": "SomethingNew", "message": "m"}
    async with client(answer(body)) as http:
        with pytest.raises(expected) as caught:
            await provider().exchange_code(http, CODE, "r")
    assert type(caught.value) is expected


async def test_numeric_error_code_without_type_is_rejected() -> None:
    async with client(answer({"code": 15, "message": "m"})) as http:
        with pytest.raises(RequestRejected) as caught:
            await provider().exchange_code(http, CODE, "r")
    assert caught.value.code == "15"


async def test_wrapped_error_response() -> None:
    body = {"error_response": {"type": "ISV", "code": "IllegalAccessToken", "msg": "expired"}}
    async with client(answer(body)) as http:
        with pytest.raises(AccessExpired, match="expired"):
            await provider().exchange_code(http, CODE, "r")


async def test_http_429_with_retry_after() -> None:
    async with client(answer({}, 429, headers={"Retry-After": "12"})) as http:
        with pytest.raises(RateLimited) as caught:
            await provider().exchange_code(http, CODE, "r")
    assert caught.value.retry_after == 12


async def test_http_5xx_is_temporary() -> None:
    async with client(answer({}, 503)) as http:
        with pytest.raises(TemporaryFailure) as caught:
            await provider().exchange_code(http, CODE, "r")
    assert caught.value.status == 503


async def test_http_4xx_without_error_code_is_rejected() -> None:
    async with client(answer({"whatever": 1}, 403)) as http:
        with pytest.raises(RequestRejected) as caught:
            await provider().exchange_code(http, CODE, "r")
    assert caught.value.status == 403


@pytest.mark.parametrize("error", [httpx2.ConnectError, httpx2.ReadTimeout])
async def test_transport_failures_are_temporary(error: type[Exception]) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise error(f"failed {request.url}")

    async with client(handler) as http:
        with pytest.raises(TemporaryFailure) as caught:
            await provider().exchange_code(http, CODE, "r")
    assert CODE not in str(caught.value)
    assert "aliexpress.com" not in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        "<html>502</html>",
        [1, 2],
        token_body(access_token=None),
        token_body(refresh_token=7),
        token_body(expire_time="soon"),
        token_body(seller_id=None, user_id=None),
        token_body(seller_id=True),
        {"error_response": "broken"},
    ],
)
async def test_malformed_responses_are_protocol_errors(body: Any) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if isinstance(body, str):
            return httpx2.Response(200, text=body, headers={"content-type": "text/html"})
        return httpx2.Response(200, json=body)

    async with client(handler) as http:
        with pytest.raises(ProtocolError) as caught:
            await provider().exchange_code(http, CODE, "r")
    assert caught.value.provider == "aliexpress"
    assert caught.value.endpoint == "/auth/token/create"
    assert str(caught.value).startswith("aliexpress /auth/token/create: ")


# -- secrets ----------------------------------------------------------------------------------


async def test_secrets_stay_out_of_reprs_messages_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"type": "ISV", "code": "InvalidCode", "message": f"code {CODE} is invalid"}
    p = provider()
    async with client(answer(token_body())) as http:
        grant = await p.exchange_code(http, CODE, "r")
    async with client(answer(echo)) as http:
        with pytest.raises(AuthorizationDead) as caught:
            await p.exchange_code(http, CODE, "r")
    echo_refresh = {"type": "ISV", "code": "IllegalRefreshToken", "message": f"bad {REFRESH}"}
    async with client(answer(echo_refresh)) as http:
        with pytest.raises(AuthorizationDead) as refreshed:
            await p.refresh(http, REFRESH)
    request = p.sign_request(httpx2.Request("GET", "https://x/sync?method=m"), ACCESS)
    async with client(answer({"ok": True})) as http:
        await http.send(request)
    texts = [repr(p), repr(grant), str(caught.value), str(refreshed.value), json.dumps(grant.raw)]
    texts += [record.getMessage() for record in caplog.records]
    for text in texts:
        for secret in (SECRET, CODE, ACCESS, REFRESH):
            assert secret not in text


# -- signing business calls -------------------------------------------------------------------


def test_sign_request_puts_system_params_in_the_query() -> None:
    request = httpx2.Request(
        "GET", "https://api-sg.aliexpress.com/sync?method=aliexpress.x.get&a=1"
    )
    signed = provider().sign_request(request, ACCESS)
    params = dict(signed.url.params)
    assert params["app_key"] == "500100"
    assert params["session"] == ACCESS
    assert params["sign_method"] == "sha256"
    assert params["timestamp"] == epoch_millis(NOW)
    assert params["a"] == "1"
    assert params["sign"] == sign(SECRET, "aliexpress.x.get", params)


def test_sign_request_signs_form_bodies() -> None:
    request = httpx2.Request(
        "POST",
        "https://api-sg.aliexpress.com/sync?extra=q",
        data={"method": "aliexpress.ds.product.get", "product_id": "100500", "empty": ""},
    )
    signed = provider().sign_request(request, ACCESS)
    body = form(signed)
    assert "sign" not in dict(signed.url.params)
    assert body["session"] == ACCESS and body["empty"] == ""
    assert signed.headers["content-length"] == str(len(signed.content))
    everything = {**dict(signed.url.params), **body}
    assert body["sign"] == sign(SECRET, "aliexpress.ds.product.get", everything)


def test_sign_request_path_shape_uses_the_platform_path() -> None:
    p = provider("http://127.0.0.1:9/sandbox/aliexpress")
    request = httpx2.Request("GET", "http://127.0.0.1:9/sandbox/aliexpress/rest/order/get?x=1")
    params = dict(p.sign_request(request, ACCESS).url.params)
    assert params["sign"] == sign(SECRET, "/order/get", params)


def test_sign_request_needs_an_api_name() -> None:
    with pytest.raises(ValueError, match="method"):
        provider().sign_request(httpx2.Request("GET", "https://x/sync"), ACCESS)


async def test_auth_signs_requests_sent_with_it() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={})

    p = provider()
    async with client(handler) as http:
        await http.post(
            "https://api-sg.aliexpress.com/sync", data={"method": "m.n"}, auth=p.auth(ACCESS)
        )
    assert form(seen[0])["session"] == ACCESS


# -- identify ---------------------------------------------------------------------------------


async def test_identify_uses_the_token_response() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError("identify must not call the platform")

    async with client(answer(token_body())) as http:
        grant = await provider().exchange_code(http, CODE, "r")
    async with client(handler) as http:
        account = await provider().identify(http, grant)
    assert account.account_id == "2000000002"
    assert account.name == "cn1234567"
    # `sp` names the site (AliExpress is "ae"), not where the shop is: no region is claimed.
    assert [(s.id, s.name, s.region) for s in account.shops] == [("2000000002", "cn1234567", None)]
    assert account.shops[0].extra == {"site": "ae"}
    assert account.extra["user_id"] == "2000000001"
    assert account.extra["site"] == "ae" and "sp" not in account.extra


async def test_refresh_expires_in_zero_means_the_grant_cannot_be_refreshed() -> None:
    body = token_body()
    body["refresh_expires_in"] = 0
    body.pop("refresh_token_valid_time", None)
    async with client(answer(body)) as http:
        grant = await provider().exchange_code(http, CODE, "r")
    assert grant.refresh_token is None and grant.refresh_expires_at is None
    assert grant.access_expires_at is not None
    assert grant.raw["refresh_expires_in"] == 0
    # Even with an absolute refresh time beside it, 0 seconds left means no refresh.
    body["refresh_token_valid_time"] = 4_102_444_800_000
    async with client(answer(body)) as http:
        again = await provider().exchange_code(http, CODE, "r")
    assert again.refresh_token is None and again.refresh_expires_at is None


async def test_a_refreshable_grant_keeps_its_refresh_token() -> None:
    async with client(answer(token_body())) as http:
        grant = await provider().exchange_code(http, CODE, "r")
    assert grant.refresh_token and grant.refresh_expires_at is not None


def test_registered_under_its_name() -> None:
    assert get("aliexpress") is AliExpress
    assert AliExpress.refreshable and not AliExpress.signs_webhooks
    # A refresh keeps the refresh token's original deadline.
    assert AliExpress.renews_refresh_token is False
