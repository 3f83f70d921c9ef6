"""Issue 11 on the live service, both databases: tenancy, bad input, unhandled errors, lifecycle.

Each test names the defect it covers; none of them may end in a 500 or a half-written row.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import insert, select, update

from shopkeys.sandbox.browser import callback_params, press
from shopkeys.sandbox.core import Fault
from shopkeys.store.tables import ConnectionRow
from tests.pages.operator import hidden_fields
from tests.service import test_connect_flow as flow
from tests.service.test_api import assert_error
from tests.service.test_connect_flow import FAILED_TITLE, Driver

db_vault = flow.db_vault
driver = flow.driver


# -- tenancy: the end user's current connection ----------------------------------------------------


async def test_token_by_end_user_needs_the_end_user(driver: Driver) -> None:
    await driver.connect("shopline", end_user_id="merchant-1")
    for params in ({}, {"end_user_id": ""}, {"end_user_id": "x" * 256}):
        assert_error(await driver.api("GET", "/v1/token", params=params), 422, "invalid_request")
    # Someone else's end user id gets nothing of merchant-1's.
    elsewhere = await driver.api("GET", "/v1/token", params={"end_user_id": "m"})
    assert_error(elsewhere, 404, "not_found")


async def test_token_by_end_user_serves_the_most_recently_connected_store(driver: Driver) -> None:
    older = await driver.connect("shopline", login="older-shop", end_user_id="merchant-1")
    newer = await driver.connect("shopline", login="newer-shop", end_user_id="merchant-1")
    tiktok = await driver.connect("tiktok_shop", login="tt-shop", end_user_id="merchant-1")

    async def current(**params: str) -> str:
        answer = await driver.api(
            "GET", "/v1/token", params={"end_user_id": "merchant-1", **params}
        )
        assert answer.status_code == 200, answer.text
        connection_id: str = answer.json()["connection_id"]
        return connection_id

    assert await current() == tiktok["id"]
    assert await current(provider="shopline") == newer["id"]
    # A refresh of the older store touches it, but the merchant did not connect it again.
    forced = await driver.api("POST", f"/v1/connections/{older['id']}/refresh")
    assert forced.status_code == 200, forced.text
    assert await current(provider="shopline") == newer["id"]
    # Reconnecting the older store makes it the current one.
    again = await driver.connect("shopline", login="older-shop", end_user_id="merchant-1")
    assert again["id"] == older["id"]
    assert await current(provider="shopline") == older["id"]
    shown = (await driver.api("GET", f"/v1/connections/{older['id']}")).json()
    assert datetime.fromisoformat(shown["connected_at"]) > datetime.fromisoformat(
        newer["connected_at"]
    )


async def test_token_by_end_user_with_many_rows(driver: Driver) -> None:
    """Far more rows than a page: the choice is made by the database, not the first 500 rows.

    The first and the last row come in through the API; the 598 between are copies of the first
    written straight into the table (600 imports over HTTP took 15 s). The newest row is the last
    one written. Only the chosen row is decrypted: a copy's tokens are bound to the row they were
    written for, so choosing any other row fails loudly."""
    base = datetime(2030, 1, 1, tzinfo=UTC)
    last = 599

    async def import_row(n: int) -> str:
        body = {
            "provider": "aliexpress",
            "access_token": f"50000many{n}",
            "account_id": f"{5_000_000_000 + n}",
            "end_user_id": "busy-merchant" if n % 2 else f"other-{n}",
            "access_expires_at": (base + timedelta(days=1)).isoformat(),
        }
        answer = await driver.api("POST", "/v1/connections/import", json=body)
        assert answer.status_code == 201, answer.text
        connection_id: str = answer.json()["connection"]["id"]
        return connection_id

    first = await import_row(0)
    table = ConnectionRow.__table__
    async with driver.vault.engine.begin() as connection:
        query = select(table).where(table.c.id == first)
        template = dict((await connection.execute(query)).mappings().one())
        copies = [
            {
                **template,
                "id": f"con_copy{n:04d}",
                "account_id": f"{5_000_000_000 + n}",
                "end_user_id": "busy-merchant" if n % 2 else f"other-{n}",
                "connected_at": base + timedelta(minutes=n),
            }
            for n in range(1, last)
        ]
        await connection.execute(insert(table), copies)
    newest = await import_row(last)
    async with driver.vault.engine.begin() as connection:
        for row_id, moment in ((first, base), (newest, base + timedelta(minutes=10_000))):
            await connection.execute(
                update(table).where(table.c.id == row_id).values(connected_at=moment)
            )
    answer = await driver.api("GET", "/v1/token", params={"end_user_id": "busy-merchant"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["account_id"] == str(5_000_000_000 + last)


# -- tenancy: a connect link belongs to the browser that opened it ---------------------------------


async def test_a_callback_in_another_browser_is_confirmed_in_the_first_one(
    driver: Driver,
) -> None:
    session = await driver.start("shopline", end_user_id="merchant-1")
    link = session["url"]
    async with (
        httpx2.AsyncClient(timeout=10) as browser_a,
        httpx2.AsyncClient(timeout=10) as browser_b,
    ):
        # Browser A opens the link (it gets the binding cookie) and is sent to the platform...
        callback = await press(browser_a, link, login="phone-shop")
        assert "shopkeys_connect" in browser_a.cookies
        for name in ("code", "state"):
            driver.secrets.add(callback_params(callback)[name])
        before = await driver.snapshot()
        # ... but the merchant comes back in browser B, which has no such cookie.
        page = await browser_b.get(callback)
        assert page.status_code == 200, page.text
        assert "Almost done" in page.text and "first browser" in page.text
        # B learns nothing about the store or the end user, and cannot confirm.
        for private in ("Phone Shop", "merchant-1", *driver.secrets):
            assert private not in page.text
        assert await driver.snapshot() == before, "nothing is connected before confirmation"
        assert (await browser_b.get(callback)).status_code == 403  # the state was used
        assert (await browser_b.get(link)).status_code == 409
        stolen = await browser_b.post(
            f"{driver.url}/connect/confirm",
            data={"session": callback_params(link)["session"], "decision": "connect"},
        )
        assert stolen.status_code == 410
        assert await driver.snapshot() == before
        # The first browser reopens the link and is asked about that store.
        confirm = await browser_a.get(link)
        assert confirm.status_code == 200, confirm.text
        assert "Connect this store?" in confirm.text and "Phone Shop" in confirm.text
        confirmed = await browser_a.post(
            f"{driver.url}/connect/confirm",
            data={"session": callback_params(link)["session"], "decision": "connect"},
        )
        assert confirmed.status_code == 200, confirmed.text
        assert "Store connected" in confirmed.text
        again = await browser_a.post(
            f"{driver.url}/connect/confirm",
            data={"session": callback_params(link)["session"], "decision": "connect"},
        )
        assert again.status_code == 410
        assert (await browser_a.get(link)).status_code == 410  # the link is used now
    [connection] = (await driver.api("GET", "/v1/connections")).json()["data"]
    assert connection["end_user_id"] == "merchant-1" and connection["account_name"] == "Phone Shop"
    stored = await driver.remember_tokens(connection["id"])
    assert stored.access_token not in await driver.database_text()


async def test_the_first_browser_keeps_the_link(driver: Driver) -> None:
    """A link opened first in A and then in B: B's authorization waits for A."""
    session = await driver.start("ecwid", end_user_id="merchant-1")
    link = session["url"]
    async with (
        httpx2.AsyncClient(timeout=10) as browser_a,
        httpx2.AsyncClient(timeout=10) as browser_b,
    ):
        token = callback_params(link)["session"]
        page = await browser_a.get(link)
        assert "Continue to Ecwid" in page.text
        form = hidden_fields(page.text)
        first = await browser_a.post(f"{driver.url}/connect", data=form)
        assert first.status_code == 303
        callback = await press(browser_b, link, login="not-mine")
        page = await browser_b.get(callback)
        assert "Almost done" in page.text
        assert (await driver.api("GET", "/v1/connections")).json()["data"] == []
        # A sees a store it does not know, and cancels: nothing is connected, the link lives.
        confirm = await browser_a.get(link)
        assert "Not Mine" in confirm.text
        cancelled = await browser_a.post(
            f"{driver.url}/connect/confirm",
            data={"session": token, "decision": "cancel"},
        )
        assert cancelled.status_code == 200 and "Nothing was connected" in cancelled.text
        assert (await driver.api("GET", "/v1/connections")).json()["data"] == []
        again = await browser_a.get(link)  # usable again
        assert again.status_code == 200 and "Continue to Ecwid" in again.text
    empty = await driver.http.post(f"{driver.url}/connect/confirm", data={})
    assert empty.status_code == 400


# -- tenancy: a store connected by another end user moves, and says so -----------------------------


async def test_connecting_anothers_store_moves_it_with_an_event(driver: Driver) -> None:
    first = await driver.connect("tiktok_shop", login="shared-shop", end_user_id="merchant-a")
    second = await driver.connect("tiktok_shop", login="shared-shop", end_user_id="merchant-b")
    assert second["id"] == first["id"] and second["end_user_id"] == "merchant-b"
    events = await driver.events(first["id"])
    assert events[0]["kind"] == "moved"
    assert events[0]["detail"] == {"from": "merchant-a", "to": "merchant-b"}
    assert [e["kind"] for e in reversed(events)] == ["connected", "reconnected", "moved"]
    gone = await driver.api("GET", "/v1/token", params={"end_user_id": "merchant-a"})
    assert_error(gone, 404, "not_found")


# -- bad input: a clear 4xx, never a 500, never a half-written row ---------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"access_expires_at": "2030-01-01T00:00:00"},
        {"access_expires_at": "0042-01-01"},
        {"refresh_expires_at": "9999-12-31T23:59:59-14:00"},
        {"access_expires_at": "0001-01-01T00:00:00+14:00"},
        {"scopes": ["orders", "\udfff"]},
        {"end_user_id": "\udfff"},
        {"account_name": "Acme\udfff"},
        {"access_token": "50000\udfff"},
        {"access_token": "50000ünïcode"},
        {"access_token": "50000with space"},
        {"access_token": "50000\x01control"},
        {"refresh_token": "r\x00nul"},
        {"end_user_id": "nul\x00byte"},
        {"access_token": "t" * 5000},
        {"scopes": ["s"] * 201},
    ],
)
async def test_bad_import_bodies_are_refused(driver: Driver, changes: dict[str, Any]) -> None:
    body = {"provider": "aliexpress", "access_token": "50000good", "account_id": "4000000011"}
    body.update(changes)
    raw = json.dumps(body)  # escapes lone surrogates as JSON allows
    answer = await driver.api(
        "POST",
        "/v1/connections/import",
        content=raw.encode(),
        headers={**driver.live.headers, "content-type": "application/json"},
    )
    assert_error(answer, 422, "invalid_request")
    for secret in ("50000", "\udfff"):
        assert secret not in answer.json()["error"]["message"]
    listed = await driver.api("GET", "/v1/connections")
    assert listed.status_code == 200 and listed.json()["data"] == []


async def test_bad_connect_session_bodies_are_refused(driver: Driver) -> None:
    for body in (
        {"provider": "shopline", "end_user_id": "\udfff"},
        {"provider": "shopline", "end_user_id": "m", "return_to": "http://x/\udfff"},
        {"provider": "shopline", "end_user_id": "m\x00"},
        {"provider": "shopline", "end_user_id": "m", "return_to": "http://a/" + "x" * 3000},
    ):
        answer = await driver.api(
            "POST",
            "/v1/connect-sessions",
            content=json.dumps(body).encode(),
            headers={**driver.live.headers, "content-type": "application/json"},
        )
        assert_error(answer, 422, "invalid_request")


async def test_nul_bytes_and_overlong_ids_in_paths_and_queries(driver: Driver) -> None:
    for path in ("/v1/connections/%00", "/v1/connections/a%00b/token", "/v1/connections?x=%00"):
        assert_error(await driver.api("GET", path), 422, "invalid_request")
    answer = await driver.api("GET", "/v1/token", params={"end_user_id": "a\x00b"})
    assert_error(answer, 422, "invalid_request")
    for path in (f"/v1/connections/{'c' * 300}", f"/v1/connections/{'c' * 300}/token"):
        assert_error(await driver.api("GET", path), 404, "not_found")
    long_filter = await driver.api("GET", "/v1/connections", params={"end_user_id": "u" * 400})
    assert long_filter.status_code == 200 and long_filter.json()["data"] == []


async def test_large_bodies_get_413(driver: Driver) -> None:
    big = {"provider": "aliexpress", "access_token": "t" * (70 * 1024), "account_id": "1"}
    declared = await driver.api("POST", "/v1/connections/import", json=big)
    assert_error(declared, 413, "payload_too_large")
    # A body far too large to read is refused from its Content-Length alone, before it is sent.
    host, port = driver.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/connections/import HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {driver.live.api_key}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n{"
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")

    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1024

    # Without a Content-Length (chunked), the body is cut off as it arrives.
    streamed = await driver.api(
        "POST",
        "/v1/connections/import",
        content=chunks(),
        headers={**driver.live.headers, "content-type": "application/json"},
    )
    assert_error(streamed, 413)
    assert (await driver.api("GET", "/v1/connections")).json()["data"] == []


async def test_an_undecryptable_row_is_a_json_500_that_closes_the_connection(
    driver: Driver,
) -> None:
    first = await driver.connect("shopline", login="one-shop")
    second = await driver.connect("shopline", login="two-shop")
    # Swap the ciphertexts: each is bound to its own row, so neither decrypts in the other.
    async with driver.vault.engine.begin() as connection:
        tokens = dict(
            (await connection.execute(select(ConnectionRow.id, ConnectionRow.access_token))).all()
        )
        for row_id, other in ((first["id"], second["id"]), (second["id"], first["id"])):
            await connection.execute(
                update(ConnectionRow)
                .where(ConnectionRow.id == row_id)
                .values(access_token=tokens[other])
            )
    driver.live.runtime.tokens.forget(first["id"])
    async with httpx2.AsyncClient(timeout=10, headers=driver.live.headers) as client:
        answer = await client.get(f"{driver.url}/v1/connections/{first['id']}/token")
        error = assert_error(answer, 500, "undecryptable")
        assert "shopkeys doctor" in error["message"]
        assert answer.headers["connection"] == "close"
        # The client's next request works (a fresh connection, not a reset).
        assert (await client.get(f"{driver.url}/healthz")).status_code == 200


# -- lifecycle: only success, a decline or expiry ends a connect session ------------------------


async def test_a_platform_failure_at_the_callback_does_not_use_up_the_link(
    driver: Driver,
) -> None:
    simulator = driver.live.simulator("shopline")
    session = await driver.start("shopline", end_user_id="merchant-1")
    simulator.faults.set("token", Fault(status=503, times=1))
    callback = await press(driver.http, session["url"])
    failed = await driver.http.get(callback)
    assert failed.status_code == 502 and FAILED_TITLE in failed.text
    # The same link works again, with a fresh state; the spent one stays refused.
    again = await press(driver.http, session["url"])
    done = await driver.http.get(again)
    assert done.status_code == 200 and "Store connected" in done.text, done.text
    assert (await driver.http.get(callback)).status_code == 403
    # Now it is used.
    assert (await driver.http.get(session["url"])).status_code == 410


async def test_a_decline_on_the_wrong_platform_does_not_use_the_state(driver: Driver) -> None:
    session = await driver.start("shopline", end_user_id="merchant-1")
    callback = await press(driver.http, session["url"])
    state = callback_params(callback)["state"]
    wrong = await driver.http.get(
        f"{driver.url}/oauth/callback/ecwid", params={"error": "access_denied", "state": state}
    )
    assert wrong.status_code == 400
    done = await driver.http.get(callback)
    assert done.status_code == 200 and "Store connected" in done.text, done.text


async def test_deeply_nested_bodies_are_refused_not_a_500(driver: Driver) -> None:
    for depth in (40, 2000, 50_000):
        raw = '{"provider": "shopline", "end_user_id": "u", "x": ' + "[" * depth + "]" * depth + "}"
        answer = await driver.api(
            "POST",
            "/v1/connect-sessions",
            content=raw.encode(),
            headers={**driver.live.headers, "content-type": "application/json"},
        )
        assert answer.status_code in (400, 413, 422), (depth, answer.status_code, answer.text[:200])
