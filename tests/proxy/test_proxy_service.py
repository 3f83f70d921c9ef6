"""The signed API proxy over a real socket: apps call the simulators through shopkeys, which
signs each call the platform's way; the simulators verify every signature as the platforms do."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from shopkeys.metrics import REGISTRY
from shopkeys.providers.ecwid import Ecwid
from shopkeys.proxy.forward import PEEK_LIMIT
from shopkeys.sandbox.core import Fault
from shopkeys.web.limits import PROXY_BODY_LIMIT
from tests.service import test_connect_flow as flow
from tests.service.test_connect_flow import Driver

db_vault = flow.db_vault
driver = flow.driver


async def _proxy(
    driver: Driver, method: str, connection_id: str, path: str, **kwargs: Any
) -> httpx2.Response:
    return await driver.api(method, f"/v1/proxy/{connection_id}{path}", **kwargs)


async def _status(driver: Driver, connection_id: str) -> str:
    shown = await driver.api("GET", f"/v1/connections/{connection_id}")
    status: str = shown.json()["status"]
    return status


def _sample(metric: str, **labels: str) -> float:
    """A proxy metric for TikTok Shop, read from the registry the live service counts in."""
    value = REGISTRY.get_sample_value(
        f"shopkeys_proxy_{metric}_total", {"provider": "tiktok_shop", **labels}
    )
    assert value is not None
    return value


@contextmanager
def _ecwid_at(
    live: Any, name: str, path: str, endpoint: Any, methods: list[str] | None = None
) -> Iterator[None]:
    """For the block, Ecwid's API is `endpoint` at `/{name}/api/v3/{store_id}{path}` on the live
    service: an upstream the test controls, reached through the real proxy."""
    route = Route(f"/{name}/api/v3/{{store_id}}{path}", endpoint, methods=methods)
    live.app.router.routes.append(route)
    real = live.runtime.providers["ecwid"]
    live.runtime.providers["ecwid"] = Ecwid(real.credentials, base_url=f"{live.url}/{name}")
    try:
        yield
    finally:
        live.runtime.providers["ecwid"] = real


# -- each platform's credentials, added its way ---------------------------------------------------


async def test_ecwid_calls_carry_the_bearer_token_and_the_store_in_the_path(
    driver: Driver,
) -> None:
    connection = await driver.connect("ecwid")
    answer = await _proxy(driver, "GET", connection["id"], "/profile")
    assert answer.status_code == 200, answer.text
    assert str(answer.json()["generalInfo"]["storeId"]) == connection["account_id"]
    listed = await _proxy(driver, "GET", connection["id"], "/products", params={"limit": "1"})
    assert listed.status_code == 200, listed.text
    assert "x-shopkeys-refreshed" not in answer.headers


async def test_tiktok_shop_calls_are_signed_and_verified_by_the_simulator(
    driver: Driver,
) -> None:
    connection = await driver.connect("tiktok_shop")
    answer = await _proxy(driver, "GET", connection["id"], "/authorization/202309/shops")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["code"] == 0, body
    assert [shop["id"] for shop in body["data"]["shops"]] == [
        shop["id"] for shop in connection["shops"]
    ]


async def test_aliexpress_business_calls_are_signed_in_the_query_or_the_form(
    driver: Driver,
) -> None:
    connection = await driver.connect("aliexpress")
    method = {"method": "aliexpress.merchant.profile.get"}
    by_query = await _proxy(driver, "GET", connection["id"], "/sync", params=method)
    assert "aliexpress_merchant_profile_get_response" in by_query.json(), by_query.text
    by_form = await _proxy(driver, "POST", connection["id"], "/sync", data=method)
    assert "aliexpress_merchant_profile_get_response" in by_form.json(), by_form.text
    nameless = await _proxy(driver, "GET", connection["id"], "/sync")
    assert nameless.status_code == 400
    assert nameless.json()["error"]["code"] == "bad_api_call"


async def test_shopline_calls_carry_the_bearer_token(driver: Driver) -> None:
    connection = await driver.connect("shopline")
    answer = await _proxy(driver, "GET", connection["id"], "/v1/token/info")
    assert answer.status_code == 200, answer.text


# -- tokens the platform calls expired, or dead ----------------------------------------------------


async def test_an_expired_token_is_refreshed_once_and_the_call_sent_again(driver: Driver) -> None:
    connection = await driver.connect("tiktok_shop")
    sim = driver.live.simulator("tiktok_shop")
    before = await driver.stored(connection["id"])
    # The platform ends the token early while shopkeys still thinks it good: only the
    # platform's 105002 can tell.
    sim.access_tokens[before.access_token].expires_at = datetime.now(UTC) - timedelta(seconds=1)  # type: ignore[attr-defined]
    refreshes = sim.calls["refresh"]
    calls, retries = _sample("calls", outcome="2xx"), _sample("retries")

    answers = await asyncio.gather(
        *(_proxy(driver, "GET", connection["id"], "/authorization/202309/shops") for _ in range(8))
    )

    for answer in answers:
        assert answer.status_code == 200 and answer.json()["code"] == 0, answer.text
    assert sim.calls["refresh"] == refreshes + 1
    assert any(a.headers.get("x-shopkeys-refreshed") == "true" for a in answers)
    after = await driver.stored(connection["id"])
    assert after.access_token != before.access_token
    assert _sample("calls", outcome="2xx") == calls + 8
    assert _sample("retries") == retries + sum(
        a.headers.get("x-shopkeys-refreshed") == "true" for a in answers
    )


async def test_a_dead_authorization_marks_the_connection_and_answers_409(driver: Driver) -> None:
    connection = await driver.connect("ecwid")
    driver.live.simulator("ecwid").uninstall(connection["account_id"])  # type: ignore[attr-defined]

    answer = await _proxy(driver, "GET", connection["id"], "/profile")

    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "needs_reauth"
    assert await _status(driver, connection["id"]) == "needs_reauth"
    assert "needs_reauth" in await driver.kinds(connection["id"])
    again = await _proxy(driver, "GET", connection["id"], "/profile")
    assert again.status_code == 409


# -- rate limits -------------------------------------------------------------------------------


async def test_a_429_passes_through_with_its_retry_after(driver: Driver) -> None:
    connection = await driver.connect("ecwid")
    sim = driver.live.simulator("ecwid")
    sim.faults.set("products", Fault(status=429, retry_after=7, times=1))

    answer = await _proxy(driver, "GET", connection["id"], "/products")

    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert await _status(driver, connection["id"]) == "active"


async def test_aliexpress_ban_in_a_200_body_gains_a_retry_after(driver: Driver) -> None:
    connection = await driver.connect("aliexpress")
    sim = driver.live.simulator("aliexpress")
    sim.ban_seconds = 12  # type: ignore[attr-defined]
    sim.faults.set("profile", Fault(platform_error="ApiCallLimit", times=1))

    answer = await _proxy(
        driver,
        "GET",
        connection["id"],
        "/sync",
        params={"method": "aliexpress.merchant.profile.get"},
    )

    assert answer.status_code == 200
    assert answer.json()["error_response"]["code"] == "ApiCallLimit"
    assert answer.headers["retry-after"] == "12"


# -- what passes, what does not ------------------------------------------------------------------


async def test_bad_paths_and_unknown_connections_get_clear_errors(driver: Driver) -> None:
    connection = await driver.connect("ecwid")
    climbing = await _proxy(driver, "GET", connection["id"], "/%2E%2E/1234/profile")
    assert climbing.status_code == 400 and climbing.json()["error"]["code"] == "bad_path"
    unknown = await _proxy(driver, "GET", "con_nope", "/profile")
    assert unknown.status_code == 404
    keyless = await driver.http.get(f"{driver.url}/v1/proxy/{connection['id']}/profile")
    assert keyless.status_code == 401


# -- streaming ------------------------------------------------------------------------------------


class _Gate:
    """An upstream answer that stops after its first part until the test opens the gate: a proxy
    that buffered the whole answer would never hand the first part on."""

    def __init__(self, first: int) -> None:
        self.first = first
        self.opened = threading.Event()
        self.ended = threading.Event()

    async def endpoint(self, request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"a" * self.first
                await asyncio.to_thread(self.opened.wait, 30)
                yield b"b" * 1000
            finally:
                self.ended.set()

        length = request.query_params.get("length")
        headers = {"content-length": str(self.first + 1000)} if length else None
        return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a_large_answer_streams_without_being_buffered(
    driver: Driver, with_length: bool
) -> None:
    connection = await driver.connect("ecwid")
    gate = _Gate(first=4 * PEEK_LIMIT)
    live = driver.live
    with _ecwid_at(live, "gated", "/export", gate.endpoint):
        params = {"length": "1"} if with_length else {}
        url = f"{driver.url}/v1/proxy/{connection['id']}/export"
        async with driver.http.stream("GET", url, params=params, headers=live.headers) as answer:
            assert answer.status_code == 200
            # Never both (RFC 9112 6.3): a length, or chunks.
            assert ("content-length" in answer.headers) is with_length
            assert ("transfer-encoding" in answer.headers) is not with_length
            received = b""
            chunks = answer.aiter_raw()
            async with asyncio.timeout(20):
                while len(received) < gate.first:
                    received += await anext(chunks)
            gate.opened.set()
            async for chunk in chunks:
                received += chunk
        assert received == b"a" * gate.first + b"b" * 1000


class _Echo:
    """An upstream that answers with what it received."""

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        seen = {
            "path": request.scope["raw_path"].decode(),
            "query": request.url.query,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode(),
        }
        return Response(json.dumps(seen), media_type="application/json")


async def test_query_body_and_headers_pass_and_the_apps_credentials_do_not(
    driver: Driver,
) -> None:
    connection = await driver.connect("ecwid")
    live = driver.live
    with _ecwid_at(live, "echo", "/{rest:path}", _Echo().endpoint, methods=["POST"]):
        answer = await _proxy(
            driver,
            "POST",
            connection["id"],
            "/orders/search%2Fx?b=2&a=1&a=3",
            content=b'{"q": "shoes"}',
            headers={
                **live.headers,
                "Content-Type": "application/json",
                "X-Request-Id": "r-1",
                "Cookie": "operator=1",
                "Connection": "X-Hop",
                "X-Hop": "1",
            },
        )
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["path"] == f"/echo/api/v3/{connection['account_id']}/orders/search%2Fx"
    assert seen["query"] == "b=2&a=1&a=3"
    assert seen["body"] == '{"q": "shoes"}'
    headers = {k: v for k, v in seen["headers"]}
    stored = await driver.stored(connection["id"])
    assert headers["authorization"] == f"Bearer {stored.access_token}"
    assert headers["x-request-id"] == "r-1" and headers["content-type"] == "application/json"
    assert headers["accept-encoding"] == "gzip, deflate"  # the app's own, passed on
    assert "cookie" not in headers and "x-hop" not in headers
    assert live.api_key not in json.dumps(seen)


# -- TikTok Shop's shop_cipher ------------------------------------------------------------------


async def test_tiktok_shop_level_calls_get_the_shops_cipher(driver: Driver) -> None:
    connection = await driver.connect("tiktok_shop")
    [shop] = connection["shops"]
    path = "/order/202309/orders"

    only_shop = await _proxy(driver, "GET", connection["id"], path, params={"ids": "5761"})
    assert only_shop.json()["code"] == 0, only_shop.text

    named = await _proxy(
        driver,
        "POST",
        connection["id"],
        "/product/202309/products/search",
        params={"page_size": "10"},
        json={"status": "ACTIVATE"},  # the signature covers the body
        headers={**driver.live.headers, "X-Shopkeys-Shop": shop["id"]},
    )
    assert named.json()["code"] == 0, named.text

    foreign = await _proxy(
        driver,
        "GET",
        connection["id"],
        path,
        params={"ids": "5761"},
        headers={**driver.live.headers, "X-Shopkeys-Shop": "7000000000000000000"},
    )
    assert foreign.status_code == 400 and foreign.json()["error"]["code"] == "bad_api_call"


async def test_tiktok_shopless_calls_lose_a_shop_cipher_the_app_sent(driver: Driver) -> None:
    connection = await driver.connect("tiktok_shop")
    answer = await _proxy(
        driver, "GET", connection["id"], "/seller/202309/shops", params={"shop_cipher": "stray"}
    )
    assert answer.json()["code"] == 0, answer.text


async def test_aliexpress_business_call_in_a_form_body(driver: Driver) -> None:
    connection = await driver.connect("aliexpress")
    answer = await _proxy(
        driver,
        "POST",
        connection["id"],
        "/sync",
        data={
            "method": "aliexpress.solution.product.list.get",
            "aeop_a_e_product_list_query": json.dumps(
                {"current_page": 1, "page_size": 5, "product_status_type": "onSelling"}
            ),
        },
    )
    assert "aliexpress_solution_product_list_get_response" in answer.json(), answer.text


async def test_a_large_file_streams_through_with_its_length(driver: Driver) -> None:
    connection = await driver.connect("ecwid")
    size = 8 * 1024 * 1024
    url = f"{driver.url}/v1/proxy/{connection['id']}/products/1/files/{size}"
    received = 0
    async with driver.http.stream("GET", url, headers=driver.live.headers) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(size)
        assert "transfer-encoding" not in answer.headers
        async for chunk in answer.aiter_bytes():
            expected = bytes((received + i) % 251 for i in range(len(chunk)))
            assert chunk == expected
            received += len(chunk)
    assert received == size


async def test_a_tiktok_deauthorization_marks_the_connection_at_the_next_call(
    driver: Driver,
) -> None:
    connection = await driver.connect("tiktok_shop")
    sim = driver.live.simulator("tiktok_shop")
    sim.deauthorize(connection["shops"][0]["id"])  # type: ignore[attr-defined]

    answer = await _proxy(driver, "GET", connection["id"], "/authorization/202309/shops")

    assert answer.status_code == 409 and answer.json()["error"]["code"] == "needs_reauth"
    assert await _status(driver, connection["id"]) == "needs_reauth"
    # The platform's words reach the app; the token never does.
    stored = await driver.stored(connection["id"])
    assert stored.access_token not in answer.text


async def test_an_app_that_goes_away_mid_answer_releases_the_platforms_connection(
    driver: Driver,
) -> None:
    connection = await driver.connect("ecwid")
    gate = _Gate(first=4 * PEEK_LIMIT)
    live = driver.live
    with _ecwid_at(live, "gated", "/export", gate.endpoint):
        url = f"{driver.url}/v1/proxy/{connection['id']}/export"
        # Its own connection, closed as the block ends.
        async with (
            httpx2.AsyncClient() as app,
            app.stream("GET", url, headers=live.headers) as answer,
        ):
            await anext(answer.aiter_raw())
        # The app hung up with the platform's answer half sent: the proxy must close its own
        # connection to the platform, which the platform sees as the end of its stream.
        assert await asyncio.to_thread(gate.ended.wait, 20)
    gate.opened.set()  # the upstream's thread stops waiting


async def test_odd_headers_bodies_and_statuses_pass_without_a_server_error(
    driver: Driver,
) -> None:
    connection = await driver.connect("ecwid")
    live = driver.live

    async def odd(request: Request) -> Response:
        if request.query_params.get("status") == "204":
            return Response(status_code=204)
        headers = [(b"content-disposition", 'attachment; filename="Größe €.csv"'.encode())]
        seen = request.headers.get("x-note", "").encode("latin-1")
        response = Response(seen, media_type="text/plain")
        response.raw_headers.extend(headers)
        return response

    with _ecwid_at(live, "odd", "/export", odd):
        note = "café".encode()  # UTF-8 bytes in a header value: obs-text to HTTP
        answer = await _proxy(
            driver,
            "GET",
            connection["id"],
            "/export",
            headers=[*live.headers.items(), ("x-note", note)],
        )
        assert answer.status_code == 200, answer.text
        assert answer.content == note
        disposition = dict(answer.headers.raw)[b"content-disposition"]
        assert disposition == 'attachment; filename="Größe €.csv"'.encode()
        empty = await _proxy(driver, "GET", connection["id"], "/export", params={"status": "204"})
        assert empty.status_code == 204 and "content-length" not in empty.headers


async def test_bodies_over_the_limit_and_undecodable_forms_are_refused(driver: Driver) -> None:
    connection = await driver.connect("aliexpress")
    # A GET too: the proxy forwards bodies whatever the method. Only the head is sent: a body
    # declared too large is refused before it is read.
    host = driver.url.removeprefix("http://")
    reader, writer = await asyncio.open_connection(*host.split(":"))
    writer.write(
        f"GET /v1/proxy/{connection['id']}/sync HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {driver.live.api_key}\r\n"
        f"Content-Length: {PROXY_BODY_LIMIT + 1}\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(10):
        status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"413", status_line
    latin = await _proxy(
        driver,
        "POST",
        connection["id"],
        "/sync",
        content=b"method=aliexpress.merchant.profile.get&name=caf\xe9",
        headers={**driver.live.headers, "content-type": "application/x-www-form-urlencoded"},
    )
    assert latin.status_code == 400 and latin.json()["error"]["code"] == "bad_api_call"


async def test_a_platforms_cookie_never_rides_along_on_later_calls(driver: Driver) -> None:
    connection = await driver.connect("ecwid")
    live = driver.live

    async def cookies(request: Request) -> Response:
        response = Response(request.headers.get("cookie", "none"), media_type="text/plain")
        response.set_cookie("platform_session", "merchant-a", path="/")
        return response

    with _ecwid_at(live, "jar", "/me", cookies):
        first = await _proxy(driver, "GET", connection["id"], "/me")
        second = await _proxy(driver, "GET", connection["id"], "/me")
    assert first.text == second.text == "none"
    assert "set-cookie" not in first.headers
    # Nothing kept either, where a token call built by the same client would pick it up.
    assert len(live.runtime.proxy.http.cookies.jar) == 0
