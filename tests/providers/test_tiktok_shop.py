"""TikTok Shop's pure protocol code: signatures, grants, errors, webhooks, secrecy."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
from shopkeys.providers import AppCredentials, get
from shopkeys.providers.tiktok_shop import (
    SHOPS_PATH,
    TOKEN_GET_PATH,
    TikTokShop,
    needs_shop_cipher,
    sign,
    signs_body,
    webhook_signature,
)

APP_KEY = "6abcdef12345"
SECRET = "unit-test-app-secret-0001"
SERVICE_ID = "7301234567890123456"
CODE = "TTP_unit-test-auth-code-0001"
ACCESS = "ROW_unit-test-access-token-0001"
REFRESH = "ROW_unit-test-refresh-token-0001"
NOW = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
BASE = "http://sandbox.test/sandbox/tiktok_shop"


def provider(*, service_id: str | None = SERVICE_ID, base_url: str | None = None) -> TikTokShop:
    credentials = AppCredentials(APP_KEY, SECRET, service_id=service_id)
    return TikTokShop(credentials, base_url=base_url, clock=lambda: NOW)


def reference(secret: str, text: str) -> str:
    """An independent spelling of the algorithm: the wrapped string, HMAC'd with the secret."""
    return hmac.new(secret.encode(), (secret + text + secret).encode(), hashlib.sha256).hexdigest()


def token_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "access_token": ACCESS,
        "access_token_expire_in": 1722342011,
        "refresh_token": REFRESH,
        "refresh_token_expire_in": 4841467787,
        "open_id": "_VIzOpenId",
        "seller_name": "Demo Store",
        "seller_base_region": "GB",
        "user_type": 0,
        "granted_scopes": ["seller.authorization.info", "seller.shop.info"],
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def envelope(data: Any = None, code: int = 0, message: str = "success") -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": "2024072312"}
    if data is not None:
        body["data"] = data
    return body


def client(handler: Callable[[httpx2.Request], httpx2.Response]) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


def answer(
    body: Any = None, status: int = 200, *, text: str | None = None, headers: Any = None
) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if text is not None:
            return httpx2.Response(status, text=text, headers=headers)
        return httpx2.Response(status, json=body, headers=headers)

    return handler


def a_grant(**changes: Any) -> Any:
    from shopkeys.grant import Grant

    values: dict[str, Any] = {
        "provider": "tiktok_shop",
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "access_expires_at": None,
        "refresh_expires_at": None,
        "scopes": [],
        "account_id": "_VIzOpenId",
        "account_name": "Demo Store",
    }
    values.update(changes)
    return Grant(**values)


# -- signatures ----------------------------------------------------------------------------------


def test_published_vector() -> None:
    assert (
        sign("app_secret", "/test-api", {"foo": "bar"})
        == "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f"
    )


def test_sign_and_access_token_never_signed() -> None:
    base = sign("app_secret", "/test-api", {"foo": "bar"})
    assert sign("app_secret", "/test-api", {"foo": "bar", "sign": "x", "access_token": "y"}) == base


def test_keys_sort_bytewise_with_underscores() -> None:
    params = {"app_key": "1", "app": "2", "ab": "3", "a_b": "4", "timestamp": "5"}
    # "_" (0x5F) sorts before letters, and a prefix before its extensions.
    expected = reference("s", "/p" + "a_b4" + "ab3" + "app2" + "app_key1" + "timestamp5")
    assert sign("s", "/p", params) == expected


def test_empty_values_still_count() -> None:
    assert sign("s", "/p", {"a": "", "b": "1"}) == reference("s", "/pab1")
    assert sign("s", "/p", {"a": ""}) != sign("s", "/p", {})


def test_unicode_is_utf8() -> None:
    params = {"name": "Ünïcødé 店铺", "app_key": "k"}
    assert sign("sécret", "/p", params) == reference("sécret", "/papp_keykname" + "Ünïcødé 店铺")


def test_json_body_is_appended_raw() -> None:
    body = json.dumps({"page_size": 10, "title": "Té"}, separators=(",", ":")).encode()
    expected = reference("s", "/product/202309/productsapp_keyk" + body.decode())
    assert sign("s", "/product/202309/products", {"app_key": "k"}, body) == expected
    assert sign("s", "/product/202309/products", {"app_key": "k"}) != expected


@pytest.mark.parametrize(
    ("method", "content_type", "signed"),
    [
        ("GET", None, False),
        ("get", "application/json", False),
        ("POST", "application/json", True),
        ("PUT", None, True),
        ("POST", "multipart/form-data; boundary=xyz", False),
        ("POST", "Multipart/Form-Data; boundary=xyz", False),
    ],
)
def test_which_bodies_are_signed(method: str, content_type: str | None, signed: bool) -> None:
    assert signs_body(method, content_type) is signed


def query(request: httpx2.Request) -> dict[str, str]:
    return dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))


def test_sign_request_signs_the_platform_path_and_json_body() -> None:
    tts = provider(base_url=BASE)
    request = httpx2.Request(
        "POST",
        f"{BASE}/product/202309/products/search?shop_cipher=ROW_abc&page_size=10",
        json={"status": "ACTIVATE"},
    )
    signed = tts.sign_request(request, ACCESS)
    params = query(signed)
    assert params["app_key"] == APP_KEY
    assert params["timestamp"] == str(int(NOW.timestamp()))
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    expected = sign(SECRET, "/product/202309/products/search", unsigned, request.content)
    assert params["sign"] == expected
    assert signed.headers["x-tts-access-token"] == ACCESS
    assert "access_token" not in params
    assert signed.url.path == "/sandbox/tiktok_shop/product/202309/products/search"


def test_sign_request_on_get_ignores_the_body_and_an_old_sign() -> None:
    tts = provider()
    request = httpx2.Request(
        "GET", "https://open-api.tiktokglobalshop.com/authorization/202309/shops?sign=stale"
    )
    params = query(tts.sign_request(request, ACCESS))
    expected = sign(
        SECRET,
        "/authorization/202309/shops",
        {"app_key": APP_KEY, "timestamp": str(int(NOW.timestamp()))},
    )
    assert params["sign"] == expected
    assert list(params).count("sign") == 1


def test_sign_request_leaves_multipart_bodies_out() -> None:
    tts = provider()
    request = httpx2.Request(
        "POST",
        "https://open-api.tiktokglobalshop.com/product/202309/images/upload",
        files={"data": ("a.png", b"\x89PNG", "image/png")},
    )
    params = query(tts.sign_request(request, ACCESS))
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    assert params["sign"] == sign(SECRET, "/product/202309/images/upload", unsigned)


def test_auth_signs_through_httpx2() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={})

    tts = provider()
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as http:
        http.get("https://open-api.tiktokglobalshop.com/seller/202309/shops", auth=tts.auth(ACCESS))
    assert seen[0].headers["x-tts-access-token"] == ACCESS
    assert "sign" in query(seen[0])


# -- authorization URL ---------------------------------------------------------------------------


def test_authorization_url_uses_the_service_id() -> None:
    url = provider().authorization_url("st4te", "https://ignored.example/cb", ["ignored"])
    assert (
        url == f"https://services.tiktokshop.com/open/authorize?service_id={SERVICE_ID}&state=st4te"
    )


def test_without_a_service_id_there_is_no_authorization_page() -> None:
    tts = provider(service_id=None)
    problem = tts.authorization_problem()
    assert problem is not None and "SHOPKEYS_TIKTOK_SHOP_SERVICE_ID" in problem
    with pytest.raises(ConfigurationError, match="service id"):
        tts.authorization_url("st4te", "https://ignored.example/cb")
    assert provider().authorization_problem() is None


def test_base_url_replaces_every_host() -> None:
    tts = provider(base_url=BASE + "/")
    assert tts.authorization_url("s", "x").startswith(f"{BASE}/open/authorize?")
    assert tts.platform_path("/sandbox/tiktok_shop/api/v2/token/get") == "/api/v2/token/get"


def test_registered_under_its_name() -> None:
    assert get("tiktok_shop") is TikTokShop
    assert TikTokShop.refreshable and TikTokShop.signs_webhooks
    # No source says a refresh extends the refresh token: assume it does not.
    assert TikTokShop.renews_refresh_token is False


# -- grants --------------------------------------------------------------------------------------


async def test_exchange_sends_the_documented_request_and_reads_absolute_expiries() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=envelope(token_data()))

    async with client(handler) as http:
        grant = await provider().exchange_code(
            http, CODE, "https://ignored", app_key=APP_KEY, shop_region="GB", locale="en"
        )
    request = seen[0]
    assert request.method == "GET"
    assert str(request.url).startswith("https://auth.tiktok-shops.com/api/v2/token/get?")
    assert query(request) == {
        "app_key": APP_KEY,
        "app_secret": SECRET,
        "auth_code": CODE,
        "grant_type": "authorized_code",
    }
    # Absolute Unix seconds, whatever the clock says (NOW is in 2031): not durations.
    assert grant.access_expires_at == datetime(2024, 7, 30, 12, 20, 11, tzinfo=UTC)
    assert grant.refresh_expires_at == datetime.fromtimestamp(4841467787, UTC)
    assert grant.refresh_expires_at.year == 2123
    assert grant.access_token == ACCESS and grant.refresh_token == REFRESH
    assert grant.account_id == "_VIzOpenId"
    assert grant.account_name == "Demo Store"
    assert grant.scopes == ["seller.authorization.info", "seller.shop.info"]
    assert grant.provider == "tiktok_shop"
    assert ACCESS not in json.dumps(grant.raw) and REFRESH not in json.dumps(grant.raw)
    assert grant.raw["seller_base_region"] == "GB"
    assert grant.raw["shop_region"] == "GB" and grant.raw["locale"] == "en"


async def test_refresh_sends_the_documented_request() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=envelope(token_data(refresh_token="ROW_new")))

    async with client(handler) as http:
        grant = await provider().refresh(http, REFRESH)
    assert seen[0].url.path == "/api/v2/token/refresh"
    assert query(seen[0]) == {
        "app_key": APP_KEY,
        "app_secret": SECRET,
        "refresh_token": REFRESH,
        "grant_type": "refresh_token",
    }
    assert grant.refresh_token == "ROW_new"


async def test_a_duration_where_a_time_belongs_is_a_protocol_error() -> None:
    async with client(answer(envelope(token_data(access_token_expire_in=604800)))) as http:
        with pytest.raises(ProtocolError, match="absolute Unix time"):
            await provider().refresh(http, REFRESH)


@pytest.mark.parametrize("value", [None, 0])
async def test_missing_refresh_expiry_means_unknown(value: Any) -> None:
    data = token_data(refresh_token_expire_in=value)
    if value is not None:
        data["refresh_token_expire_in"] = value
    async with client(answer(envelope(data))) as http:
        grant = await provider().refresh(http, REFRESH)
    assert grant.refresh_expires_at is None


@pytest.mark.parametrize("call", ["exchange", "refresh"])
@pytest.mark.parametrize("value", [None, 0])
async def test_missing_access_expiry_assumes_the_documented_7_days(
    call: str, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # None drops the field; 0 is sent as it stands.
    data = token_data(access_token_expire_in=value)
    async with client(answer(envelope(data))) as http:
        p = provider()
        grant = await (
            p.exchange_code(http, CODE, "x") if call == "exchange" else p.refresh(http, REFRESH)
        )
    assert TikTokShop.default_access_lifetime == timedelta(days=7)
    assert grant.access_expires_at == NOW + timedelta(days=7)
    # The refresh token's stated expiry is read as always.
    assert grant.refresh_expires_at == datetime.fromtimestamp(4841467787, UTC)
    assert "assuming the documented lifetime of 7.0 days" in caplog.text
    for secret in (SECRET, CODE, ACCESS, REFRESH):
        assert secret not in caplog.text


async def test_a_stated_access_expiry_is_not_replaced_by_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client(answer(envelope(token_data()))) as http:
        grant = await provider().refresh(http, REFRESH)
    # The documented example's absolute time, though NOW lies years after it.
    assert grant.access_expires_at == datetime.fromtimestamp(1722342011, UTC)
    assert "assuming" not in caplog.text


async def test_seller_name_and_scopes_are_optional() -> None:
    data = token_data(seller_name=None, granted_scopes=None)
    async with client(answer(envelope(data))) as http:
        grant = await provider().refresh(http, REFRESH)
    assert grant.account_name is None and grant.scopes == []


# -- errors --------------------------------------------------------------------------------------

ERROR_CASES = [
    (36004004, 200, AuthorizationDead),
    (36004001, 200, AuthorizationDead),
    (36004005, 200, AuthorizationDead),
    (105001, 200, AuthorizationDead),
    (105002, 200, AccessExpired),
    (105005, 200, RequestRejected),
    (106001, 401, RequestRejected),
    (36009004, 200, RequestRejected),
    (36009002, 200, RateLimited),
    (36009003, 200, TemporaryFailure),
]


@pytest.mark.parametrize(("code", "status", "kind"), ERROR_CASES)
async def test_every_error_code_has_its_class(
    code: int, status: int, kind: type[ProviderError]
) -> None:
    async with client(answer(envelope(code=code, message="words"), status)) as http:
        with pytest.raises(kind) as caught:
            await provider().refresh(http, REFRESH)
    error = caught.value
    assert type(error) is kind
    assert error.code == str(code) and error.status == status
    assert error.provider == "tiktok_shop" and error.endpoint == "refresh"


async def test_http_429_is_rate_limited_with_retry_after() -> None:
    handler = answer(text="slow down", status=429, headers={"Retry-After": "17"})
    async with client(handler) as http:
        with pytest.raises(RateLimited) as caught:
            await provider().exchange_code(http, CODE, "x")
    assert caught.value.retry_after == 17


async def test_rate_limit_code_with_retry_after_header() -> None:
    handler = answer(envelope(code=36009002), headers={"Retry-After": "3"})
    async with client(handler) as http:
        with pytest.raises(RateLimited) as caught:
            await provider().exchange_code(http, CODE, "x")
    assert caught.value.retry_after == 3


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_temporary(status: int) -> None:
    async with client(answer(text="<html>oops</html>", status=status)) as http:
        with pytest.raises(TemporaryFailure) as caught:
            await provider().exchange_code(http, CODE, "x")
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Invalid parameter shop_cipher", RequestRejected),
        ("Internal error, please try again", TemporaryFailure),
        ("", RequestRejected),
    ],
)
async def test_unknown_codes(message: str, kind: type[ProviderError]) -> None:
    async with client(answer(envelope(code=12345678, message=message))) as http:
        with pytest.raises(kind) as caught:
            await provider().exchange_code(http, CODE, "x")
    assert type(caught.value) is kind and caught.value.code == "12345678"


async def test_bare_client_error_is_rejected() -> None:
    async with client(answer(text="Forbidden", status=403)) as http:
        with pytest.raises(RequestRejected) as caught:
            await provider().exchange_code(http, CODE, "x")
    assert caught.value.status == 403


async def test_error_status_with_code_zero_is_rejected() -> None:
    async with client(answer(envelope(token_data()), 400)) as http:
        with pytest.raises(RequestRejected):
            await provider().exchange_code(http, CODE, "x")


async def test_transport_failures_are_temporary_and_name_no_url() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"cannot reach {request.url}")

    async with client(handler) as http:
        with pytest.raises(TemporaryFailure) as caught:
            await provider().exchange_code(http, CODE, "x")
    assert SECRET not in str(caught.value) and CODE not in str(caught.value)

    def slow(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("too slow")

    async with client(slow) as http:
        with pytest.raises(TemporaryFailure):
            await provider().refresh(http, REFRESH)


MALFORMED = [
    pytest.param(None, "<html>502</html>", id="html"),
    pytest.param([1, 2], None, id="list"),
    pytest.param({"message": "success"}, None, id="no-code"),
    pytest.param({"code": "0", "data": token_data()}, None, id="string-code"),
    pytest.param({"code": True, "data": token_data()}, None, id="bool-code"),
    pytest.param(envelope(), None, id="no-data"),
    pytest.param(envelope("data"), None, id="data-not-object"),
    pytest.param(envelope(token_data(access_token=None)), None, id="no-access-token"),
    pytest.param(envelope(token_data(refresh_token=5)), None, id="refresh-token-number"),
    pytest.param(envelope(token_data(access_token_expire_in="soon")), None, id="expiry-text"),
    pytest.param(
        envelope(token_data(access_token_expire_in=None, refresh_token=None)),
        None,
        id="no-expiry-no-refresh-token",
    ),
    pytest.param(envelope(token_data(refresh_token_expire_in=[1])), None, id="refresh-expiry-list"),
    pytest.param(envelope(token_data(open_id=None)), None, id="no-open-id"),
    pytest.param(envelope(token_data(granted_scopes="a,b")), None, id="scopes-string"),
    pytest.param(envelope(token_data(seller_name={"x": 1})), None, id="name-object"),
]


@pytest.mark.parametrize(("body", "text"), MALFORMED)
async def test_malformed_token_answers_are_protocol_errors(body: Any, text: str | None) -> None:
    async with client(answer(body, text=text)) as http:
        with pytest.raises(ProtocolError) as caught:
            await provider().exchange_code(http, CODE, "x")
    assert str(caught.value).startswith("tiktok_shop token:")
    assert SECRET not in str(caught.value) and CODE not in str(caught.value)


# -- identify ------------------------------------------------------------------------------------

SHOP = {
    "id": "7000714532876273420",
    "name": "Demo Store",
    "region": "GB",
    "code": "GBLCSTWP7D",
    "cipher": "ROW_cipher",
    "seller_type": "LOCAL",
}


async def test_identify_signs_its_call_and_reads_the_shops() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=envelope({"shops": [SHOP]}))

    async with client(handler) as http:
        account = await provider(base_url=BASE).identify(http, a_grant())
    request = seen[0]
    assert request.url.path == "/sandbox/tiktok_shop/authorization/202309/shops"
    params = query(request)
    assert "shop_cipher" not in params and "access_token" not in params
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    assert params["sign"] == sign(SECRET, "/authorization/202309/shops", unsigned)
    assert request.headers["x-tts-access-token"] == ACCESS
    assert account.account_id == "_VIzOpenId" and account.name == "Demo Store"
    (shop,) = account.shops
    assert (shop.id, shop.name, shop.region) == (SHOP["id"], "Demo Store", "GB")
    assert shop.extra == {"code": "GBLCSTWP7D", "cipher": "ROW_cipher", "seller_type": "LOCAL"}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="no-shops"),
        pytest.param({"shops": {"id": "1"}}, id="shops-object"),
        pytest.param({"shops": [{**SHOP, "id": None}]}, id="shop-without-id"),
        pytest.param({"shops": [{**SHOP, "cipher": 3.5}]}, id="cipher-float"),
    ],
)
async def test_malformed_shops_are_protocol_errors(data: dict[str, Any]) -> None:
    async with client(answer(envelope(data))) as http:
        with pytest.raises(ProtocolError) as caught:
            await provider().identify(http, a_grant())
    assert str(caught.value).startswith("tiktok_shop shops:")


@pytest.mark.parametrize(("code", "kind"), [(105001, AuthorizationDead), (105002, AccessExpired)])
async def test_identify_errors(code: int, kind: type[ProviderError]) -> None:
    async with client(answer(envelope(code=code))) as http:
        with pytest.raises(kind):
            await provider().identify(http, a_grant())


# -- webhooks ------------------------------------------------------------------------------------


def test_webhook_signature_is_app_key_plus_body() -> None:
    body = b'{"type":6,"shop_id":"1","timestamp":1700000000,"data":{}}'
    expected = hmac.new(SECRET.encode(), APP_KEY.encode() + body, hashlib.sha256).hexdigest()
    assert webhook_signature(APP_KEY, SECRET, body) == expected
    tts = provider()
    assert tts.verify_webhook({"Authorization": expected}, body)
    assert tts.verify_webhook({"authorization": expected.upper()}, body)
    assert not tts.verify_webhook({"Authorization": expected}, body + b" ")
    assert not tts.verify_webhook({"Authorization": "0" * 64}, body)
    assert not tts.verify_webhook({"Authorization": "é"}, body)
    assert not tts.verify_webhook({}, body)
    assert not tts.verify_webhook({"Authorization": ""}, body)
    other = hmac.new(b"other", APP_KEY.encode() + body, hashlib.sha256).hexdigest()
    assert not tts.verify_webhook({"Authorization": other}, body)


# -- secrecy -------------------------------------------------------------------------------------


def test_repr_hides_secrets() -> None:
    assert SECRET not in repr(provider())
    text = repr(a_grant())
    assert ACCESS not in text and REFRESH not in text


async def test_no_secret_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    async with client(answer(envelope(token_data()))) as http:
        grant = await provider().exchange_code(http, CODE, "x")
        await provider().refresh(http, REFRESH)
    for code in (36004004, 36004005, 106001):
        async with client(answer(envelope(code=code))) as http:
            with pytest.raises(ProviderError) as caught:
                await provider().exchange_code(http, CODE, "x")
            errors.append(str(caught.value))
            with pytest.raises(ProviderError) as caught:
                await provider().refresh(http, REFRESH)
            errors.append(str(caught.value))
    assert any("api/v2/token" in r.getMessage() for r in caplog.records), "httpx2 should log"
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for secret in (SECRET, CODE, REFRESH, grant.access_token):
        assert secret not in logged
        assert all(secret not in e for e in errors)


def test_error_messages_are_redacted() -> None:
    response = httpx2.Response(
        200, json=envelope(code=36009004, message="bad app_secret=leaked-value")
    )
    error = provider()._classify(36009004, "bad app_secret=leaked-value", response, "token")
    assert "leaked-value" not in str(error)


def test_query_of_signed_requests_are_stable() -> None:
    # The query keeps the caller's own parameters untouched, only adding ours.
    request = httpx2.Request("GET", "https://x.test/order/202309/orders?ids=1%2C2&z=")
    params = query(provider().sign_request(request, ACCESS))
    assert params["ids"] == "1,2" and params["z"] == ""
    assert urlsplit(str(request.url)).path == "/order/202309/orders"


# -- hosts -----------------------------------------------------------------------------------------


def test_three_hosts_by_default() -> None:
    tts = provider()
    assert tts.authorization_url("s", "x").startswith(
        "https://services.tiktokshop.com/open/authorize?"
    )
    assert tts.url("token", TOKEN_GET_PATH) == "https://auth.tiktok-shops.com/api/v2/token/get"
    assert tts.url("api", SHOPS_PATH) == (
        "https://open-api.tiktokglobalshop.com/authorization/202309/shops"
    )


def test_us_region_moves_only_the_authorization_page() -> None:
    tts = TikTokShop(AppCredentials(APP_KEY, SECRET, service_id=SERVICE_ID), region="US")
    assert tts.authorization_url("s", "x").startswith(
        "https://services.us.tiktokshop.com/open/authorize?"
    )
    # Token calls must never go to the authorization host.
    assert tts.url("token", TOKEN_GET_PATH).startswith("https://auth.tiktok-shops.com/")
    assert tts.url("api", SHOPS_PATH).startswith("https://open-api.tiktokglobalshop.com/")


def test_each_host_can_be_replaced_alone() -> None:
    tts = TikTokShop(
        AppCredentials(APP_KEY, SECRET, service_id=SERVICE_ID),
        hosts={"token": "https://token.proxy.example/"},
    )
    assert tts.url("token", TOKEN_GET_PATH) == "https://token.proxy.example/api/v2/token/get"
    assert tts.authorization_url("s", "x").startswith("https://services.tiktokshop.com/")


def test_unknown_region_or_role_is_a_configuration_error() -> None:
    credentials = AppCredentials(APP_KEY, SECRET, service_id=SERVICE_ID)
    with pytest.raises(ConfigurationError, match="known regions: us"):
        TikTokShop(credentials, region="eu")
    with pytest.raises(ConfigurationError, match="no host role services"):
        TikTokShop(credentials, hosts={"services": "https://x.example"})


async def test_token_calls_go_to_the_token_host_in_the_us_region() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"code": 0, "message": "success", "data": token_data()})

    tts = TikTokShop(AppCredentials(APP_KEY, SECRET, service_id=SERVICE_ID), region="us")
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        await tts.exchange_code(http, CODE, "ignored")
        await tts.refresh(http, REFRESH)
    assert [r.url.host for r in seen] == ["auth.tiktok-shops.com"] * 2


# -- shop_cipher ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "needed"),
    [
        ("GET", "/order/202309/orders/search", True),
        ("POST", "/product/202309/products", True),
        ("GET", "/product/202309/brands", True),
        ("GET", "/product/202309/categories", True),
        ("GET", "/product/202309/categories/600001/attributes", True),
        ("POST", "/fulfillment/202309/images/upload", True),
        ("GET", "/event/202309/webhooks", True),
        ("GET", "/authorization/202309/shops", False),
        ("GET", "/seller/202309/shops", False),
        ("GET", "/seller/202309/permissions", False),
        ("POST", "/product/202309/brands", False),
        ("POST", "/product/202309/global_products", False),
        ("GET", "/product/202309/global_products/1729", False),
        ("GET", "/product/202309/global_categories", False),
        ("POST", "/product/202309/global_categories/recommend", False),
        ("GET", "/product/202309/categories/600001/global_attributes", False),
        ("GET", "/product/202309/categories/600001/global_rules", False),
        ("POST", "/product/202309/images/upload", False),
        ("POST", "/product/202309/files/upload", False),
        ("GET", "/product/202409/compliance/manufacturers", False),
    ],
)
def test_which_paths_carry_the_shop_cipher(method: str, path: str, needed: bool) -> None:
    assert needs_shop_cipher(path, method) is needed


def test_apply_shop_cipher_adds_or_strips_it_before_signing() -> None:
    tts = provider(base_url=BASE)
    orders = httpx2.Request("GET", f"{BASE}/order/202309/orders?page_size=10")
    tts.sign_request(tts.apply_shop_cipher(orders, "ROW_cipher"), ACCESS)
    assert orders.url.params["shop_cipher"] == "ROW_cipher"
    # The cipher is signed like any other parameter.
    params = {k: v for k, v in orders.url.params.items() if k != "sign"}
    assert orders.url.params["sign"] == sign(SECRET, "/order/202309/orders", params)
    shops = httpx2.Request("GET", f"{BASE}/authorization/202309/shops?shop_cipher=stale")
    tts.apply_shop_cipher(shops, "ROW_cipher")
    assert "shop_cipher" not in shops.url.params
    # Without a cipher of ours, a shop-level call keeps the caller's own.
    callers = httpx2.Request("GET", f"{BASE}/order/202309/orders?shop_cipher=other")
    tts.apply_shop_cipher(callers, None)
    assert callers.url.params["shop_cipher"] == "other"
    replaced = httpx2.Request("GET", f"{BASE}/order/202309/orders?shop_cipher=other")
    assert tts.apply_shop_cipher(replaced, "mine").url.params.get_list("shop_cipher") == ["mine"]
