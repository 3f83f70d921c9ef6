"""The Python client without a service: what it sends (through `httpx2.MockTransport`), how it
reads error answers, what it refuses before sending, and what importing it costs."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import pytest

import shopkeys
from shopkeys.client import (
    SHOP_HEADER,
    BadRequest,
    Client,
    Conflict,
    NeedsReauth,
    NotFound,
    PlatformError,
    RateLimited,
    ServerError,
    ShopkeysApiError,
    SyncClient,
    Token,
    Unauthorized,
    error_from_response,
)

BASE = "http://shopkeys.test"
KEY = "sk_offline_" + "k" * 32
CID = "con_abc"


class Recorder:
    """A transport that keeps every request and answers what `reply` says (200 `{}` by default)."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []
        self.reply = httpx2.Response(200, json={"ok": True})

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.reply

    @property
    def last(self) -> httpx2.Request:
        return self.requests[-1]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(recorder: Recorder) -> AsyncIterator[Client]:
    async with Client(BASE, KEY, transport=httpx2.MockTransport(recorder)) as client:
        yield client


@pytest.fixture
def sync_client(recorder: Recorder) -> Iterator[SyncClient]:
    with SyncClient(BASE, KEY, transport=httpx2.MockTransport(recorder)) as client:
        yield client


# -- api(): the platform's API through the proxy ------------------------------------------------


async def test_api_client_reaches_the_proxy(client: Client, recorder: Recorder) -> None:
    async with client.api(CID) as api:
        assert str(api.base_url) == f"{BASE}/v1/proxy/{CID}/"
        answer = await api.get("/products", params={"limit": 5})
        assert answer.json() == {"ok": True}
        await api.post("/order/202309/orders/search", json={"page_size": 10})
    first, second = recorder.requests
    assert str(first.url) == f"{BASE}/v1/proxy/{CID}/products?limit=5"
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.headers["user-agent"] == f"shopkeys-client/{shopkeys.__version__}"
    assert SHOP_HEADER.lower() not in first.headers
    assert second.method == "POST"
    assert second.url.path == f"/v1/proxy/{CID}/order/202309/orders/search"
    assert json.loads(second.content) == {"page_size": 10}
    assert KEY not in repr(api.headers)


def test_sync_api_client_reaches_the_proxy(sync_client: SyncClient, recorder: Recorder) -> None:
    with sync_client.api(CID, shop="7000000001") as api:
        assert isinstance(api, httpx2.Client)
        api.get("/sync", params={"method": "aliexpress.merchant.profile.get"})
    request = recorder.last
    assert str(request.url) == (
        f"{BASE}/v1/proxy/{CID}/sync?method=aliexpress.merchant.profile.get"
    )
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers[SHOP_HEADER] == "7000000001"


@pytest.mark.parametrize(
    "url",
    [
        "https://images-cdn.ecwid.com/images/1.jpg",
        f"{BASE}/v1/connections",
        f"{BASE}/v1/proxy/{CID}x/products",
        "http://127.0.0.1:9/v1/proxy/" + CID + "/products",
    ],
)
async def test_api_clients_never_take_the_key_elsewhere(
    client: Client, sync_client: SyncClient, recorder: Recorder, url: str
) -> None:
    async with client.api(CID) as api:
        with pytest.raises(ValueError, match="only calls the connection's proxy") as refused:
            await api.get(url)
    assert KEY not in str(refused.value)
    with sync_client.api(CID) as api, pytest.raises(ValueError):
        api.get(url)
    assert recorder.requests == []


async def test_api_clients_share_the_pool_and_end_with_it(recorder: Recorder) -> None:
    client = Client(f"{BASE}/behind/a/prefix/", KEY, transport=httpx2.MockTransport(recorder))
    # Closing an api() client leaves the Client and its pool working.
    async with client.api("con/../x") as api:
        await api.get("/products")
    assert recorder.last.url.raw_path == b"/behind/a/prefix/v1/proxy/con%2F..%2Fx/products"
    await client.api(CID).get("/products")
    await client.aclose()
    assert client.closed
    # Once the Client is closed, so is every api() client it made: the pool is gone.
    with pytest.raises(RuntimeError, match="closed"):
        await client.api(CID).get("/products")


def test_sync_api_clients_end_with_the_client(recorder: Recorder) -> None:
    client = SyncClient(BASE, KEY, transport=httpx2.MockTransport(recorder))
    api = client.api(CID)
    api.close()
    client.api(CID).get("/x")
    assert recorder.last.url.path == f"/v1/proxy/{CID}/x"
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.api(CID).get("/x")


# -- what the calls send ------------------------------------------------------------------------

TOKEN = {
    "access_token": "at_secret_value",
    "expires_at": "2030-01-01T00:00:00Z",
    "provider": "tiktok_shop",
    "account_id": "shop-1",
    "connection_id": CID,
    "public_token": "public_secret_value",
}


async def test_requests_as_the_api_reads_them(client: Client, recorder: Recorder) -> None:
    recorder.reply = httpx2.Response(200, json=TOKEN)
    token = await client.current_token("merchant 42/x", provider="tiktok_shop")
    assert recorder.last.url.path == "/v1/token"
    assert dict(recorder.last.url.params) == {
        "end_user_id": "merchant 42/x",
        "provider": "tiktok_shop",
    }
    assert token.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert token.public_token == "public_secret_value"
    for hidden in ("at_secret_value", "public_secret_value"):
        assert hidden not in repr(token) and hidden not in str(token)

    await client.token("con/x")
    assert recorder.last.url.raw_path == b"/v1/connections/con%2Fx/token"

    recorder.reply = httpx2.Response(200, json={"data": [], "next_after": None})
    page = await client.connections(claimed=False, limit=7, after="con_a")
    assert dict(recorder.last.url.params) == {"claimed": "false", "limit": "7", "after": "con_a"}
    assert list(page) == []

    recorder.reply = httpx2.Response(
        201,
        json={
            "id": "cs_1",
            "url": f"{BASE}/connect?session=link_secret",
            "expires_at": "2030-01-01T00:30:00+00:00",
        },
    )
    session = await client.connect_session("ecwid", end_user_id="m1")
    assert recorder.last.method == "POST"
    assert recorder.last.url.path == "/v1/connect-sessions"
    assert json.loads(recorder.last.content) == {"provider": "ecwid", "end_user_id": "m1"}
    assert "link_secret" not in repr(session)

    recorder.reply = httpx2.Response(204)
    assert await client.delete(CID) is None
    assert recorder.last.method == "DELETE"


async def test_iter_connections_follows_next_after(client: Client, recorder: Recorder) -> None:
    def connection(cid: str) -> dict[str, object]:
        now = "2030-01-01T00:00:00Z"
        return {
            "id": cid, "provider": "ecwid", "account_id": "1", "status": "active",
            "version": 1, "created_at": now, "updated_at": now, "some_new_field": [1],
        }  # fmt: skip

    pages = {
        None: {"data": [connection("con_a"), connection("con_b")], "next_after": "con_b"},
        "con_b": {"data": [connection("con_c")], "next_after": None},
    }

    def answer(request: httpx2.Request) -> httpx2.Response:
        recorder.requests.append(request)
        return httpx2.Response(200, json=pages[request.url.params.get("after")])

    async with Client(BASE, KEY, transport=httpx2.MockTransport(answer)) as paged:
        seen = [c.id async for c in paged.iter_connections(provider="ecwid", page_size=2)]
    assert seen == ["con_a", "con_b", "con_c"]
    assert [dict(r.url.params) for r in recorder.requests] == [
        {"provider": "ecwid", "limit": "2"},
        {"provider": "ecwid", "limit": "2", "after": "con_b"},
    ]


# -- errors -------------------------------------------------------------------------------------


def error(status: int, code: str, message: str = "m", **headers: str) -> httpx2.Response:
    return httpx2.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (error(400, "not_supported"), BadRequest, "not_supported"),
        (error(422, "invalid_request"), BadRequest, "invalid_request"),
        (error(401, "unauthorized"), Unauthorized, "unauthorized"),
        (error(404, "not_found"), NotFound, "not_found"),
        (error(409, "needs_reauth"), NeedsReauth, "needs_reauth"),
        (error(409, "already_claimed"), Conflict, "already_claimed"),
        (error(410, "link_closed"), ShopkeysApiError, "link_closed"),
        (error(502, "platform_error"), PlatformError, "platform_error"),
        (error(500, "internal_error"), ServerError, "internal_error"),
        (httpx2.Response(503, text="<html>bad gateway</html>"), ServerError, "http_error"),
        (httpx2.Response(404, json={"detail": "x"}), NotFound, "http_error"),
    ],
)
def test_error_kinds(answer: httpx2.Response, kind: type[ShopkeysApiError], code: str) -> None:
    found = error_from_response(answer)
    assert type(found) is kind
    assert found.status == answer.status_code
    assert found.code == code
    assert found.message
    assert str(answer.status_code) in str(found)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("-4", 0.0), ("soon", None), ("nan", None), (None, None)],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    found = error_from_response(error(429, "rate_limited", **headers))
    assert isinstance(found, RateLimited)
    assert found.retry_after == seconds


def test_retry_after_as_a_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(minutes=2), usegmt=True)
    found = error_from_response(error(429, "rate_limited", **{"Retry-After": when}))
    assert isinstance(found, RateLimited)
    assert found.retry_after is not None and 100 < found.retry_after <= 120


def test_errors_survive_pickling() -> None:
    limited = error_from_response(error(429, "rate_limited", "slow down", **{"Retry-After": "9"}))
    copy = pickle.loads(pickle.dumps(limited))
    assert isinstance(copy, RateLimited)
    assert (copy.status, copy.code, copy.message, copy.retry_after) == (
        429,
        "rate_limited",
        "slow down",
        9.0,
    )


async def test_the_api_key_is_never_in_an_error(client: Client, recorder: Recorder) -> None:
    # Something in front of the service that echoes the request's headers back.
    recorder.reply = error(401, "unauthorized", f"bad header Authorization: Bearer {KEY}")
    with pytest.raises(Unauthorized) as refused:
        await client.connections()
    assert KEY not in str(refused.value) and KEY not in repr(refused.value)
    assert "[hidden]" in refused.value.message
    assert KEY not in repr(client)
    assert repr(client) == f"Client(base_url='{BASE}')"


async def test_an_answer_that_is_not_the_apis(client: Client, recorder: Recorder) -> None:
    recorder.reply = httpx2.Response(200, text="<html>a web server</html>")
    with pytest.raises(ShopkeysApiError) as odd:
        await client.token(CID)
    assert odd.value.code == "unexpected_response"
    recorder.reply = httpx2.Response(200, json={"access_token": "t"})  # fields missing
    with pytest.raises(ShopkeysApiError, match="not the answer"):
        await client.token(CID)


def test_sync_client_errors(sync_client: SyncClient, recorder: Recorder) -> None:
    recorder.reply = error(409, "needs_reauth", "the merchant must connect again")
    with pytest.raises(NeedsReauth, match="connect again"):
        sync_client.token(CID)
    recorder.reply = httpx2.Response(200, json=TOKEN)
    assert sync_client.token(CID) == Token.from_json(TOKEN)
    assert repr(sync_client) == f"SyncClient(base_url='{BASE}')"


# -- refused before sending ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "sk_with space", f"{KEY}\r\nX-Injected: 1", "sk_é"])
def test_unusable_api_key_is_refused_without_quoting_it(key: str) -> None:
    with pytest.raises(ValueError) as refused:
        Client(BASE, key)
    assert str(refused.value) == "api_key must be the key itself (sk_...), without spaces"


@pytest.mark.parametrize("url", ["shopkeys.test", "ftp://shopkeys.test", "http://h.test/?a=1"])
def test_unusable_base_url(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        SyncClient(url, KEY)


async def test_arguments_refused_before_sending(client: Client, recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="empty"):
        await client.token("")
    with pytest.raises(ValueError, match="empty"):
        await client.current_token("")
    for limit in (0, 501):
        with pytest.raises(ValueError, match="limit"):
            await client.connections(limit=limit)
    with pytest.raises(ValueError, match="shop"):
        client.api(CID, shop="a b")
    assert recorder.requests == []


# -- importing ----------------------------------------------------------------------------------


def imported_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after `statement`."""
    code = f"{statement}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


def test_importing_shopkeys_stays_cheap() -> None:
    modules = imported_after("import shopkeys")
    assert "httpx2" not in modules
    assert "shopkeys.client" not in modules


def test_the_client_talks_http_only() -> None:
    modules = imported_after("from shopkeys import Client, SyncClient")
    ours = {m for m in modules if m.startswith("shopkeys.")}
    assert ours <= {
        "shopkeys.client",
        "shopkeys.client._async",
        "shopkeys.client._core",
        "shopkeys.client._sync",
        "shopkeys.client.errors",
        "shopkeys.client.models",
        "shopkeys.version",
    }, ours
    for heavy in ("fastapi", "starlette", "sqlalchemy", "pydantic", "cryptography"):
        assert heavy not in modules
    assert shopkeys.Client is Client and shopkeys.SyncClient is SyncClient
    with pytest.raises(AttributeError):
        _ = shopkeys.Nothing  # type: ignore[attr-defined]
