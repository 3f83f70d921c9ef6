"""The JSON API over a real socket, on both databases: keys and scopes, every route's answers."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest
from fastapi.routing import APIRoute
from pydantic import SecretStr
from sqlalchemy import update

from shopkeys.api_keys import ApiKeys
from shopkeys.errors import AuthorizationDead
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.sandbox.core import Fault
from shopkeys.store.tables import ConnectionRow
from shopkeys.store.vault import Vault
from shopkeys.web import api, hot_path
from tests.conftest import serve_service
from tests.pages.operator import OperatorClient, hidden_fields
from tests.service import test_connect_flow as flow
from tests.service.test_connect_flow import Driver, with_params

# The fixtures live beside the end-to-end test; pytest finds them by these module-level names.
db_vault = flow.db_vault
driver = flow.driver


def v1_operations() -> list[tuple[str, str]]:
    """(method, path) of every `/v1` route, path parameters filled in (the OpenAPI test checks
    that this is every route the app serves)."""
    found = [("GET", hot_path.PATH)]
    for route in api.router.routes:
        assert isinstance(route, APIRoute)
        found += [(method, route.path) for method in sorted(route.methods)]
    return [(m, p.replace("{connection_id}", "con_nothing")) for m, p in found]


async def import_aliexpress(
    driver: Driver, account_id: str, end_user_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    body = {
        "provider": "aliexpress",
        "access_token": f"50000imported{secrets.token_hex(8)}",
        "account_id": account_id,
        "end_user_id": end_user_id,
        **extra,
    }
    answer = await driver.api("POST", "/v1/connections/import", json=body)
    assert answer.status_code == 201, answer.text
    connection: dict[str, Any] = answer.json()["connection"]
    driver.secrets.add(body["access_token"])
    return connection


def assert_error(answer: httpx2.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"code", "message"}, error
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


# -- API keys and scopes ------------------------------------------------------------------------


async def test_every_v1_route_needs_a_key(driver: Driver) -> None:
    operations = v1_operations()
    assert ("GET", "/v1/connections/con_nothing/token") in operations
    assert len(operations) >= 9
    for method, path in operations:
        for headers in ({}, {"Authorization": "Bearer sk_not_a_key"}, {"Authorization": "Basic x"}):
            answer = await driver.api(method, path, headers=headers)
            assert_error(answer, 401, "unauthorized")
    # Unknown paths under /v1 are guarded too (nothing about the API leaks without a key).
    assert_error(await driver.api("GET", "/v1/nothing-here", headers={}), 401)


async def test_revoked_key_is_refused(driver: Driver, db_vault: Vault) -> None:
    keys = ApiKeys(db_vault)
    record, value = await keys.create("soon-gone", "admin")
    await keys.revoke(record.id)
    answer = await driver.api(
        "GET", "/v1/connections", headers={"Authorization": f"Bearer {value}"}
    )
    error = assert_error(answer, 401, "unauthorized")
    assert "revoked" in error["message"]
    assert value not in answer.text


async def test_read_scope(driver: Driver, db_vault: Vault) -> None:
    _, value = await ApiKeys(db_vault).create("reader", "read")
    reader = {"Authorization": f"Bearer {value}"}
    connection = await import_aliexpress(driver, "2000000001", "reader-user")
    cid = connection["id"]
    for method, path in [
        ("GET", "/v1/connections"),
        ("GET", f"/v1/connections/{cid}"),
        ("GET", f"/v1/connections/{cid}/events"),
        ("GET", f"/v1/connections/{cid}/token"),
        ("GET", "/v1/token?end_user_id=reader-user"),
    ]:
        answer = await driver.api(method, path, headers=reader)
        assert answer.status_code == 200, (path, answer.text)
    for method, path, body in [
        ("POST", "/v1/connect-sessions", {"provider": "shopline", "end_user_id": "x"}),
        ("POST", f"/v1/connections/{cid}/refresh", None),
        ("DELETE", f"/v1/connections/{cid}", None),
        ("POST", "/v1/connections/import", {"provider": "aliexpress", "access_token": "t"}),
    ]:
        answer = await driver.api(method, path, headers=reader, json=body)
        assert_error(answer, 403, "forbidden")
    # Nothing changed.
    shown = await driver.api("GET", f"/v1/connections/{cid}")
    assert shown.json()["version"] == 1


# -- connections ----------------------------------------------------------------------------------


async def test_list_filters_and_pages(driver: Driver) -> None:
    made = [
        await import_aliexpress(driver, f"30000000{n:02d}", "alice" if n % 2 else "bob")
        for n in range(7)
    ]
    shopline = await driver.connect("shopline", end_user_id="alice")
    everything = await driver.api("GET", "/v1/connections")
    assert everything.status_code == 200
    ids = [c["id"] for c in everything.json()["data"]]
    assert ids == sorted(ids)
    assert set(ids) == {c["id"] for c in made} | {shopline["id"]}
    assert everything.json()["next_after"] is None

    async def ids_for(**query: Any) -> list[str]:
        answer = await driver.api("GET", "/v1/connections", params=query)
        assert answer.status_code == 200, answer.text
        return [c["id"] for c in answer.json()["data"]]

    assert await ids_for(provider="shopline") == [shopline["id"]]
    assert sorted(await ids_for(provider="aliexpress")) == sorted(c["id"] for c in made)
    alice = sorted([c["id"] for c in made if c["end_user_id"] == "alice"] + [shopline["id"]])
    assert await ids_for(end_user_id="alice") == alice
    assert await ids_for(end_user_id="nobody") == []
    assert await ids_for(status="needs_reauth") == []
    assert len(await ids_for(status="active")) == 8
    assert await ids_for(provider="aliexpress", end_user_id="alice") == [
        i for i in alice if i != shopline["id"]
    ]

    # Pages of three, following next_after to the end.
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if after:
            params["after"] = after
        answer = await driver.api("GET", "/v1/connections", params=params)
        page = answer.json()
        seen += [c["id"] for c in page["data"]]
        pages += 1
        after = page["next_after"]
        if after is None:
            break
        assert after == page["data"][-1]["id"]
    assert seen == ids
    assert pages == 3

    for bad in ({"limit": 0}, {"limit": 501}, {"provider": "amazon"}, {"status": "asleep"}):
        assert_error(await driver.api("GET", "/v1/connections", params=bad), 422)


async def test_connection_has_no_tokens_and_delete(driver: Driver) -> None:
    connection = await driver.connect("shopline")
    cid = connection["id"]
    stored = await driver.stored(cid)
    shown = await driver.api("GET", f"/v1/connections/{cid}")
    assert shown.status_code == 200
    body = shown.json()
    assert not {"access_token", "refresh_token"} & set(body)
    assert stored.access_token not in shown.text
    assert stored.refresh_token and stored.refresh_token not in shown.text
    listed = await driver.api("GET", "/v1/connections")
    assert stored.access_token not in listed.text
    assert stored.refresh_token not in listed.text
    assert body["account_name"]
    assert body["shops"] and body["scopes"]

    deleted = await driver.api("DELETE", f"/v1/connections/{cid}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_error(await driver.api("GET", f"/v1/connections/{cid}"), 404, "not_found")
    assert_error(await driver.api("GET", f"/v1/connections/{cid}/token"), 404, "not_found")
    assert_error(await driver.api("DELETE", f"/v1/connections/{cid}"), 404, "not_found")
    assert_error(await driver.api("POST", f"/v1/connections/{cid}/refresh"), 404, "not_found")
    assert (await driver.api("GET", "/v1/connections")).json()["data"] == []
    # The event log keeps what happened.
    assert await driver.kinds(cid) == ["connected", "disconnected"]


async def test_forced_refresh(driver: Driver) -> None:
    connection = await driver.connect("tiktok_shop")
    cid = connection["id"]
    before = await driver.stored(cid)
    answer = await driver.api("POST", f"/v1/connections/{cid}/refresh")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == cid
    assert body["version"] == 2
    assert body["last_refreshed_at"] is not None
    after = await driver.remember_tokens(cid)
    assert after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token
    token = await driver.token(cid)
    assert token.json()["access_token"] == after.access_token
    await driver.token_works("tiktok_shop", after.access_token, connection["account_id"])
    assert await driver.kinds(cid) == ["connected", "refreshed"]


async def test_import_shopline_token_from_the_platform(driver: Driver) -> None:
    """A token obtained straight from the simulator, outside shopkeys, then imported."""
    provider = driver.live.runtime.providers["shopline"]
    redirect_uri = driver.live.settings.platform("shopline").redirect_uri
    location = await press(driver.http, provider.authorization_url("outside", redirect_uri))
    code = callback_params(location)["code"]
    grant = await provider.exchange_code(driver.http, code, redirect_uri)
    driver.secrets.update({grant.access_token, grant.refresh_token or ""})
    body = {
        "provider": "shopline",
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "access_expires_at": grant.access_expires_at.isoformat()
        if grant.access_expires_at
        else None,
        "refresh_expires_at": grant.refresh_expires_at.isoformat()
        if grant.refresh_expires_at
        else None,
        "end_user_id": "imported-user",
    }
    answer = await driver.api("POST", "/v1/connections/import", json=body)
    assert answer.status_code == 201, answer.text
    imported = answer.json()
    assert imported["created"] is True
    connection = imported["connection"]
    assert grant.access_token not in answer.text
    assert connection["account_id"] == grant.account_id  # identified by the platform
    assert connection["account_name"]
    token = await driver.token(connection["id"])
    assert token.status_code == 200
    assert token.json()["access_token"] == grant.access_token
    by_user = await driver.api("GET", "/v1/token", params={"end_user_id": "imported-user"})
    assert by_user.json()["access_token"] == grant.access_token
    # Importing it again updates the same connection.
    again = await driver.api("POST", "/v1/connections/import", json=body)
    assert again.status_code == 201, again.text
    assert again.json()["created"] is False
    assert again.json()["connection"]["id"] == connection["id"]
    assert again.json()["connection"]["version"] == 2

    # The imported refresh token works too.
    refreshed = await driver.api("POST", f"/v1/connections/{connection['id']}/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert (await driver.token(connection["id"])).json()["access_token"] != grant.access_token
    assert await driver.kinds(connection["id"]) == ["connected", "reconnected", "refreshed"]


async def _shopline_grant_from_outside(driver: Driver) -> Any:
    provider = driver.live.runtime.providers["shopline"]
    redirect_uri = driver.live.settings.platform("shopline").redirect_uri
    location = await press(driver.http, provider.authorization_url("outside", redirect_uri))
    grant = await provider.exchange_code(
        driver.http, callback_params(location)["code"], redirect_uri
    )
    driver.secrets.update({grant.access_token, grant.refresh_token or ""})
    return grant


async def test_import_shopline_grant_whose_access_token_expired_refreshes_it(
    driver: Driver,
) -> None:
    """SHOPLINE's TOKEN_EXPIRED means "refresh": a live refresh token makes the grant worth
    importing, and the refreshed tokens are what gets stored."""
    grant = await _shopline_grant_from_outside(driver)
    simulator = driver.live.simulator("shopline")
    # Past the access token's life, within the refresh token's extra day.
    assert grant.access_expires_at is not None
    simulator.clock.advance((grant.access_expires_at - simulator.clock()).total_seconds() + 60)
    body = {
        "provider": "shopline",
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
        "end_user_id": "late-importer",
    }
    answer = await driver.api("POST", "/v1/connections/import", json=body)
    assert answer.status_code == 201, answer.text
    connection = answer.json()["connection"]
    assert connection["account_id"] == grant.account_id and connection["status"] == "active"
    assert connection["refreshable"] is True
    stored = await driver.remember_tokens(connection["id"])
    assert stored.access_token != grant.access_token
    assert stored.refresh_token and stored.refresh_token != grant.refresh_token  # rotated
    assert connection["metadata"]["imported"] is True
    token = await driver.token(connection["id"])
    assert token.json()["access_token"] == stored.access_token
    # The old refresh token was used up by the import's refresh (SHOPLINE rotates).
    provider = driver.live.runtime.providers["shopline"]
    assert grant.refresh_token
    with pytest.raises(AuthorizationDead):
        await provider.refresh(driver.http, grant.refresh_token)


async def test_import_of_an_expired_shopline_token_without_a_live_refresh_token(
    driver: Driver,
) -> None:
    grant = await _shopline_grant_from_outside(driver)
    simulator = driver.live.simulator("shopline")
    assert grant.access_expires_at is not None
    simulator.clock.advance((grant.access_expires_at - simulator.clock()).total_seconds() + 60)
    alone = {"provider": "shopline", "access_token": grant.access_token}
    error = assert_error(await driver.api("POST", "/v1/connections/import", json=alone), 400)
    assert error["code"] == "invalid_token" and "no refresh token" in error["message"]
    # Two days on, the refresh token is dead too: refused, and nothing is stored.
    simulator.clock.advance(2 * 86_400)
    both = {**alone, "refresh_token": grant.refresh_token}
    error = assert_error(await driver.api("POST", "/v1/connections/import", json=both), 400)
    assert error["code"] == "invalid_token" and "refused the refresh token" in error["message"]
    for secret in (grant.access_token, grant.refresh_token or ""):
        assert secret not in error["message"]
    assert (await driver.api("GET", "/v1/connections")).json()["data"] == []


async def test_import_aliexpress_with_account_id(driver: Driver) -> None:
    expires = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    connection = await import_aliexpress(
        driver, "4000000001", "ae-user", access_expires_at=expires.isoformat()
    )
    assert connection["account_id"] == "4000000001"
    assert connection["metadata"] == {"imported": True}
    answer = await driver.token(connection["id"])
    assert answer.status_code == 200
    token = answer.json()
    assert token["access_token"].startswith("50000imported")
    assert datetime.fromisoformat(token["expires_at"]) == expires
    assert token["account_id"] == "4000000001"
    assert await driver.kinds(connection["id"]) == ["connected"]


@pytest.mark.parametrize("provider", ["aliexpress", "tiktok_shop", "ecwid"])
async def test_import_needs_account_id_where_the_platform_cannot_tell(
    driver: Driver, provider: str
) -> None:
    body = {"provider": provider, "access_token": "some-token"}
    error = assert_error(await driver.api("POST", "/v1/connections/import", json=body), 400)
    assert "account_id" in error["message"]
    assert (await driver.api("GET", "/v1/connections")).json()["data"] == []


async def test_import_refused_token(driver: Driver) -> None:
    body = {"provider": "shopline", "access_token": "not-a-real-token"}
    answer = await driver.api("POST", "/v1/connections/import", json=body)
    error = assert_error(answer, 400, "invalid_token")
    assert "not-a-real-token" not in error["message"]
    assert (await driver.api("GET", "/v1/connections")).json()["data"] == []


async def test_import_validation(driver: Driver) -> None:
    for body in ({}, {"provider": "shopline"}, {"provider": "x", "access_token": "t"}):
        error = assert_error(
            await driver.api("POST", "/v1/connections/import", json=body), 422, "invalid_request"
        )
        assert "body" in error["message"]
    answer = await driver.api(
        "POST", "/v1/connections/import", content=b"{not json", headers=driver.live.headers
    )
    assert_error(answer, 422, "invalid_request")


async def test_token_for_end_user(driver: Driver) -> None:
    older = await driver.connect("shopline", login="old-store", end_user_id="eve")
    newer = await driver.connect("tiktok_shop", login="new-store", end_user_id="eve")
    answer = await driver.api("GET", "/v1/token", params={"end_user_id": "eve"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["connection_id"] == newer["id"]
    only = await driver.api(
        "GET", "/v1/token", params={"end_user_id": "eve", "provider": "shopline"}
    )
    assert only.json()["connection_id"] == older["id"]
    assert only.json()["access_token"] == (await driver.stored(older["id"])).access_token
    assert_error(
        await driver.api("GET", "/v1/token", params={"end_user_id": "nobody"}), 404, "not_found"
    )
    assert_error(await driver.api("GET", "/v1/token"), 422)


async def test_healthz(driver: Driver) -> None:
    answer = await driver.http.get(f"{driver.url}/healthz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "database": "ok",
        "providers": {
            "aliexpress": "configured",
            "tiktok_shop": "configured",
            "shopline": "configured",
            "ecwid": "configured",
        },
    }


async def test_unknown_v1_path_and_method(driver: Driver) -> None:
    assert_error(await driver.api("GET", "/v1/nothing-here"), 404, "not_found")
    assert_error(await driver.api("PUT", "/v1/connections"), 405, "method_not_allowed")


# -- connect sessions -------------------------------------------------------------------------


async def test_connect_session_answer(driver: Driver) -> None:
    session = await driver.start("ecwid")
    assert session["id"].startswith("cs_")
    expires = datetime.fromisoformat(session["expires_at"])
    assert timedelta(minutes=25) < expires - datetime.now(UTC) <= timedelta(minutes=30)
    assert session["url"].startswith(f"{driver.url}/connect?")
    opened = await driver.http.get(session["url"])
    assert opened.status_code == 200
    assert "Connect your Ecwid store" in opened.text
    assert "See your products and categories" in opened.text  # the scopes, in words
    form = hidden_fields(opened.text)
    assert form["session"] == callback_params(session["url"])["session"]
    onward = await driver.http.post(f"{driver.url}/connect", data=form)
    assert onward.status_code == 303
    assert onward.headers["location"].startswith(
        driver.live.settings.platform("ecwid").base_url or ""
    )
    bad = await driver.http.get(with_params(session["url"], session="nope"))
    assert bad.status_code == 404
    assert "This link does not work" in bad.text
    for body in (
        {"provider": "amazon", "end_user_id": "x"},
        {"provider": "ecwid"},
        {"provider": "ecwid", "end_user_id": ""},
    ):
        assert_error(await driver.api("POST", "/v1/connect-sessions", json=body), 422)


async def test_return_to(driver: Driver) -> None:
    return_to = f"{driver.url}/after-connect?tab=stores"
    session = await driver.start("shopline", return_to=return_to)
    callback = await press(driver.http, session["url"])
    done = await driver.http.get(callback)
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith(f"{driver.url}/after-connect?")
    query = dict(parse_qsl(urlsplit(location).query))
    assert query["tab"] == "stores"
    shown = await driver.api("GET", f"/v1/connections/{query['connection_id']}")
    assert shown.status_code == 200
    assert shown.json()["provider"] == "shopline"

    # Elsewhere, or not a URL at all (which once was a 500).
    refused = ("https://evil.example/after", "//evil.example/x", "javascript:alert(1)")
    for elsewhere in (*refused, "http://[::1", "http://[", "not a url at all"):
        answer = await driver.api(
            "POST",
            "/v1/connect-sessions",
            json={"provider": "shopline", "end_user_id": "x", "return_to": elsewhere},
        )
        assert_error(answer, 400, "return_to_not_allowed")


async def test_callback_parameters_that_collide_with_arguments(driver: Driver) -> None:
    """Extra callback parameters named like the exchange's own arguments are ignored, not a 500."""
    callback, _ = await driver.approve("shopline")
    odd = with_params(callback, redirect_uri="https://elsewhere.example/", http="x", self="y")
    done = await driver.http.get(odd)
    assert done.status_code == 200, done.text
    assert "Store connected" in done.text


# -- refresh failures on the hot path ---------------------------------------------------------


async def test_rate_limited_refresh(driver: Driver) -> None:
    connection = await driver.connect("shopline")
    cid = connection["id"]
    await driver.expire(cid)
    driver.live.simulator("shopline").faults.set("refresh", Fault(status=429, retry_after=30))
    answer = await driver.token(cid)
    assert_error(answer, 429, "rate_limited")
    assert answer.headers["retry-after"] == "30"
    shown = (await driver.api("GET", f"/v1/connections/{cid}")).json()
    assert shown["status"] == "active"
    assert shown["refresh_failures"] == 1
    assert await driver.kinds(cid) == ["connected", "refresh_failed"]
    # The platform's Retry-After holds for every caller: until it passes nobody asks again.
    driver.live.simulator("shopline").faults.clear()
    answer = await driver.token(cid)
    assert_error(answer, 429, "rate_limited")
    assert 0 < int(answer.headers["retry-after"]) <= 30
    assert await driver.kinds(cid) == ["connected", "refresh_failed"]
    # Once the wait has passed, the same call refreshes.
    async with driver.vault.engine.begin() as connection:
        await connection.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == cid)
            .values(blocked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    answer = await driver.token(cid)
    assert answer.status_code == 200, answer.text
    assert await driver.kinds(cid) == ["connected", "refresh_failed", "refreshed"]


async def test_rate_limited_but_token_still_valid(driver: Driver) -> None:
    """A token with a little life left beats an error: it is served, and the failure noted."""
    connection = await driver.connect("shopline")
    cid = connection["id"]
    stored = await driver.stored(cid)
    await driver.expire(cid, ago=-timedelta(minutes=2))  # two minutes left
    driver.live.simulator("shopline").faults.set("refresh", Fault(status=429, retry_after=30))
    answer = await driver.token(cid)
    assert answer.status_code == 200, answer.text
    assert answer.json()["access_token"] == stored.access_token
    assert await driver.kinds(cid) == ["connected", "refresh_failed"]


@pytest.mark.parametrize("provider", ["tiktok_shop", "shopline"])
async def test_revoked_refresh_token_needs_reauth(driver: Driver, provider: str) -> None:
    connection = await driver.connect(provider)
    cid = connection["id"]
    simulator: Any = driver.live.simulator(provider)
    if provider == "shopline":
        for issued in simulator.refresh_tokens.values():
            issued.revoked = True
    else:
        for authorization in simulator.authorizations:
            authorization.revoked = True
    await driver.expire(cid)
    answer = await driver.token(cid)
    error = assert_error(answer, 409, "needs_reauth")
    assert (await driver.stored(cid)).refresh_token not in error["message"]
    shown = (await driver.api("GET", f"/v1/connections/{cid}")).json()
    assert shown["status"] == "needs_reauth"
    assert await driver.kinds(cid) == ["connected", "needs_reauth"]
    # It stays refused, without asking the platform again, until the merchant reconnects.
    assert_error(await driver.token(cid), 409, "needs_reauth")
    assert_error(await driver.api("POST", f"/v1/connections/{cid}/refresh"), 409, "needs_reauth")
    assert await driver.kinds(cid) == ["connected", "needs_reauth"]
    listed = await driver.api("GET", "/v1/connections", params={"status": "needs_reauth"})
    assert [c["id"] for c in listed.json()["data"]] == [cid]
    # The end user's current store needs them: no other store is served in its place.
    by_user = await driver.api("GET", "/v1/token", params={"end_user_id": "merchant-1"})
    assert_error(by_user, 409, "needs_reauth")

    # Reconnecting brings it back.
    again = await driver.connect(provider)
    assert again["id"] == cid
    assert again["status"] == "active"
    assert (await driver.token(cid)).status_code == 200


async def test_platform_down_during_refresh(driver: Driver) -> None:
    connection = await driver.connect("aliexpress")
    cid = connection["id"]
    await driver.expire(cid)
    driver.live.simulator("aliexpress").faults.set("refresh", Fault(status=503))
    error = assert_error(await driver.token(cid), 502, "platform_error")
    assert "aliexpress" in error["message"]
    shown = (await driver.api("GET", f"/v1/connections/{cid}")).json()
    assert shown["status"] == "active"
    assert shown["last_error"]


async def test_home_page_outside_the_sandbox(
    database_url: str, tmp_path: Path, http: httpx2.AsyncClient
) -> None:
    """Outside the sandbox, `/` is the operators' dashboard: stores only after signing in."""
    with serve_service(
        database_url,
        tmp_path / "data",
        sandbox=False,
        aliexpress_app_key="123",
        aliexpress_app_secret=SecretStr("not-used"),
        aliexpress_base_url="http://127.0.0.1:9",
    ) as live:
        url, headers = live.url, live.headers
        imported = await http.post(
            f"{url}/v1/connections/import",
            json={"provider": "aliexpress", "access_token": "t", "account_id": "55555"},
            headers=headers,
        )
        assert imported.status_code == 201, imported.text
        cid = imported.json()["connection"]["id"]
        home = await http.get(f"{url}/", follow_redirects=True)
        assert home.status_code == 200
        assert str(home.url).startswith(f"{url}/signin")
        assert cid not in home.text and "55555" not in home.text
        assert "Sandbox" not in home.text
        # The sandbox's one-click connect is gone: links come from the API or a signed-in form.
        assert (await http.post(f"{url}/connect/start/aliexpress")).status_code == 404
        operator = OperatorClient(http, url)
        assert (await operator.sign_in(live.api_key)).status_code == 303
        dashboard = await operator.get("/")
        assert f"/connections/{cid}" in dashboard.text
        assert "App Market" not in dashboard.text  # no simulated market outside the sandbox


async def test_home_page_in_the_sandbox(driver: Driver, http: httpx2.AsyncClient) -> None:
    connection = await driver.connect("ecwid")
    operator = OperatorClient(http, driver.url)
    assert (await operator.sign_in(driver.live.api_key)).status_code == 303
    home = await operator.get("/")
    assert "Sandbox: every platform here is a local simulator" in home.text
    assert f"/connections/{connection['id']}" in home.text
    assert 'value="sandbox-user"' in home.text  # the demo's end user, as the curl line says
    assert "/sandbox/ecwid/_sandbox/app-market" in home.text
    link = await operator.connect_link("shopline")
    assert link.startswith(f"{driver.url}/connect?session=")


async def test_a_grant_without_refresh_token_is_not_refreshable(driver: Driver) -> None:
    """AliExpress grants with `refresh_expires_in` 0 (or imports without one): 409 on a forced
    refresh, served while the access token lives, needs_reauth once it has run out."""
    expires = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    connection = await import_aliexpress(
        driver, "4000000077", access_expires_at=expires.isoformat()
    )
    assert connection["refreshable"] is False
    cid = connection["id"]
    forced = await driver.api("POST", f"/v1/connections/{cid}/refresh")
    error = assert_error(forced, 409, "not_refreshable")
    assert "no refresh token" in error["message"]
    assert (await driver.token(cid)).status_code == 200
    await driver.expire(cid)
    dead = assert_error(await driver.token(cid), 409, "needs_reauth")
    assert "no refresh token" in dead["message"]
    shown = (await driver.api("GET", f"/v1/connections/{cid}")).json()
    assert shown["status"] == "needs_reauth"
    assert shown["last_error"] == "the grant has no refresh token"


async def test_aliexpress_grant_that_cannot_refresh_connects_without_refresh_token(
    driver: Driver,
) -> None:
    simulator = driver.live.simulator("aliexpress")
    simulator.lifetimes.refresh = 0  # the gateway then says refresh_expires_in 0
    connection = await driver.connect("aliexpress")
    assert connection["refreshable"] is False and connection["refresh_expires_at"] is None
    stored = await driver.stored(connection["id"])
    assert stored.refresh_token is None
    forced = await driver.api("POST", f"/v1/connections/{connection['id']}/refresh")
    assert_error(forced, 409, "not_refreshable")


async def test_tiktok_shop_without_a_service_id_cannot_start_a_connection(
    database_url: str, tmp_path: Path, http: httpx2.AsyncClient
) -> None:
    """No quiet fallback to the legacy page: a clear 409 naming the missing setting."""
    with serve_service(
        database_url,
        tmp_path / "data",
        tiktok_shop_app_key="6a1b2c3d4e5f6",
        tiktok_shop_app_secret=SecretStr("not-used"),
    ) as live:
        url, headers = live.url, live.headers
        answer = await http.post(
            f"{url}/v1/connect-sessions",
            json={"provider": "tiktok_shop", "end_user_id": "m-1"},
            headers=headers,
        )
        error = assert_error(answer, 409, "incomplete_configuration")
        assert "SHOPKEYS_TIKTOK_SHOP_SERVICE_ID" in error["message"]
        # The other platforms still connect.
        ok = await http.post(
            f"{url}/v1/connect-sessions",
            json={"provider": "shopline", "end_user_id": "m-1"},
            headers=headers,
        )
        assert ok.status_code == 201, ok.text


async def test_import_bounds_and_account_ids(driver: Driver) -> None:
    base = {"provider": "aliexpress", "access_token": "50000bounds", "account_id": "4000000002"}
    for changes in (
        {"end_user_id": "x" * 256},
        {"end_user_id": ""},
        {"account_id": ""},
        {"account_id": "9" * 129},
        {"account_name": "n" * 256},
    ):
        answer = await driver.api("POST", "/v1/connections/import", json={**base, **changes})
        assert_error(answer, 422, "invalid_request")
    # An Ecwid store id goes into URL paths: only a real one is accepted, and nothing is sent.
    for store in ("12/../34", "0123", "abc", "1" * 13):
        body = {"provider": "ecwid", "access_token": "secret_x", "account_id": store}
        error = assert_error(await driver.api("POST", "/v1/connections/import", json=body), 400)
        assert error["code"] == "invalid_account_id" and "store id" in error["message"]
    assert (await driver.api("GET", "/v1/connections")).json()["data"] == []
