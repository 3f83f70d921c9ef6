"""Ecwid App Market installs: a callback with a code and a store id but no state.

The merchant installs the app on Ecwid; shopkeys started no flow, so the store is connected with
no end user, the merchant sees a page (or the operator's return URL), and the app claims the
connection with `PATCH /v1/connections/{id}`. Runs the real service over a socket, on both
databases, against the sandbox's App Market.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from shopkeys.api_keys import ApiKeys
from shopkeys.crypto import KeyRing, load_key_ring
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.sandbox.core import Fault
from shopkeys.store import database as db
from shopkeys.store.database import create_engine
from shopkeys.store.vault import Vault
from tests.conftest import SERVICE_API_KEY, TEST_KEYS, LiveService, make_settings, serve
from tests.pages.operator import OperatorClient
from tests.service import test_connect_flow as flow
from tests.service.test_connect_flow import FAILED_TITLE, Driver

# The fixtures live beside the end-to-end test; pytest finds them by these module-level names.
db_vault = flow.db_vault
driver = flow.driver


async def install(driver: Driver, login: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    """Start an install on the simulated App Market: (callback URL, the control's answer)."""
    answer = await driver.http.post(
        f"{driver.url}/sandbox/ecwid/_sandbox/install", json={"login": login, **extra}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    location: str = body["location"]
    driver.secrets.add(callback_params(location)["code"])
    return location, body


async def ecwid_connections(driver: Driver) -> list[dict[str, Any]]:
    listed = await driver.api("GET", "/v1/connections", params={"provider": "ecwid"})
    assert listed.status_code == 200, listed.text
    data: list[dict[str, Any]] = listed.json()["data"]
    return data


async def test_install_connects_without_an_end_user_and_the_app_claims_it(
    driver: Driver,
) -> None:
    location, body = await install(driver, "market-shop")
    params = callback_params(location)
    assert set(params) == {"code", "store_id"}, "an App Market install carries no state"
    assert location.startswith(f"{driver.url}/oauth/callback/ecwid?")

    page = await driver.http.get(location)
    assert page.status_code == 200, page.text
    assert "App installed" in page.text and "Market Shop" in page.text
    assert params["code"] not in page.text

    [connection] = await ecwid_connections(driver)
    cid = connection["id"]
    assert connection["account_id"] == body["store_id"] == params["store_id"]
    unclaimed = await driver.api("GET", "/v1/connections", params={"claimed": "false"})
    assert [c["id"] for c in unclaimed.json()["data"]] == [cid]
    assert connection["end_user_id"] is None and connection["status"] == "active"
    assert connection["refreshable"] is False
    [event] = await driver.events(cid)
    assert event["kind"] == "connected" and event["detail"]["source"] == "app_market"
    stored = await driver.remember_tokens(cid)
    token = await driver.token(cid)
    assert token.status_code == 200 and token.json()["access_token"] == stored.access_token
    assert "public_token" not in token.json()
    await driver.token_works("ecwid", stored.access_token, connection["account_id"])

    # The app claims the store for its merchant.
    claimed = await driver.api(
        "PATCH", f"/v1/connections/{cid}", json={"end_user_id": "merchant-7"}
    )
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["end_user_id"] == "merchant-7"
    assert claimed.json()["version"] == connection["version"]
    assert await driver.kinds(cid) == ["connected", "end_user_changed"]
    changed = (await driver.events(cid))[0]
    assert changed["detail"] == {"from": None, "to": "merchant-7"}
    by_user = await driver.api("GET", "/v1/token", params={"end_user_id": "merchant-7"})
    assert by_user.status_code == 200 and by_user.json()["connection_id"] == cid

    # Another end user cannot take it without naming its current one (a stale or forged claim).
    taken = await driver.api("PATCH", f"/v1/connections/{cid}", json={"end_user_id": "intruder"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "already_claimed"
    wrong = await driver.api(
        "PATCH",
        f"/v1/connections/{cid}",
        json={"end_user_id": "intruder", "expected_end_user_id": "someone-else"},
    )
    assert wrong.status_code == 409
    assert (await driver.api("GET", f"/v1/connections/{cid}")).json()["end_user_id"] == "merchant-7"
    unclaimed = await driver.api("GET", "/v1/connections", params={"claimed": "false"})
    assert unclaimed.json()["data"] == []
    claimed_only = await driver.api("GET", "/v1/connections", params={"claimed": "true"})
    assert [c["id"] for c in claimed_only.json()["data"]] == [cid]

    # Claiming again with the same end user changes nothing and records nothing.
    same = await driver.api("PATCH", f"/v1/connections/{cid}", json={"end_user_id": "merchant-7"})
    assert same.status_code == 200 and await driver.kinds(cid) == [
        "connected",
        "end_user_changed",
    ]

    # A reinstall of the same store updates the same connection and keeps its end user.
    again, _ = await install(driver, "market-shop")
    assert (await driver.http.get(again)).status_code == 200
    [reinstalled] = await ecwid_connections(driver)
    assert reinstalled["id"] == cid and reinstalled["end_user_id"] == "merchant-7"
    assert reinstalled["version"] == connection["version"] + 1
    latest = (await driver.events(cid))[0]
    assert latest["kind"] == "reconnected" and latest["detail"]["source"] == "app_market"

    # Reloading the page (or anyone replaying its address) must not spend the code again: a
    # second exchange would disable the token the first one stored. Refused before Ecwid is asked.
    before = await driver.snapshot()
    stored = await driver.remember_tokens(cid)
    simulator = driver.live.simulator("ecwid")
    for _ in range(2):
        replay = await driver.http.get(again)
        assert replay.status_code == 409 and FAILED_TITLE in replay.text
        assert "already completed" in replay.text
    assert await driver.snapshot() == before
    await driver.token_works("ecwid", stored.access_token, connection["account_id"])
    assert simulator.tokens[stored.access_token].active


async def test_the_app_market_page_has_an_install_button(driver: Driver) -> None:
    page_url = f"{driver.url}/sandbox/ecwid/_sandbox/app-market"
    page = await driver.http.get(page_url)
    assert page.status_code == 200 and ">Install</button>" in page.text
    cancelled = await driver.http.post(page_url, data={"decision": "deny", "login": "x"})
    assert cancelled.status_code == 200 and "location" not in cancelled.headers
    location = await press(driver.http, page_url, button="Install", login="button-shop")
    assert "state" not in callback_params(location)
    done = await driver.http.get(location)
    assert done.status_code == 200 and "Button Shop" in done.text
    [connection] = await ecwid_connections(driver)
    assert connection["end_user_id"] is None
    # The dashboard (sandbox mode) links to it and marks the store unclaimed.
    operator = OperatorClient(driver.http, driver.url)
    assert (await operator.sign_in(driver.live.api_key)).status_code == 303
    home = await operator.get("/")
    assert "/sandbox/ecwid/_sandbox/app-market" in home.text and "unclaimed" in home.text


async def test_public_token_is_kept_encrypted_and_served_beside_the_access_token(
    driver: Driver,
) -> None:
    location, _ = await install(driver, "storefront-shop", scopes=["public_storefront"])
    assert (await driver.http.get(location)).status_code == 200
    [connection] = await ecwid_connections(driver)
    stored = await driver.remember_tokens(connection["id"])
    assert stored.public_token and stored.public_token.startswith("public_")
    driver.secrets.add(stored.public_token)
    token = await driver.token(connection["id"])
    assert token.json()["public_token"] == stored.public_token
    assert token.json()["access_token"] == stored.access_token
    # Encrypted at rest: neither token appears in any row or in the database file.
    text = await driver.database_text()
    assert stored.public_token not in text and stored.access_token not in text
    # Nor in the connection as the API shows it.
    shown = await driver.api("GET", f"/v1/connections/{connection['id']}")
    assert stored.public_token not in shown.text


async def test_claim_is_admin_only_and_checks_its_input(driver: Driver, db_vault: Vault) -> None:
    location, _ = await install(driver, "claims-shop")
    assert (await driver.http.get(location)).status_code == 200
    [connection] = await ecwid_connections(driver)
    path = f"/v1/connections/{connection['id']}"
    missing = await driver.api("PATCH", "/v1/connections/con_missing", json={"end_user_id": "m"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for bad in (
        {"end_user_id": ""},
        {"end_user_id": "x" * 256},
        {"end_user_id": 5},
        {},
        {"end_user_id": "m", "status": "revoked"},
        {"end_user_id": "m", "expected_end_user_id": ""},
    ):
        refused = await driver.api("PATCH", path, json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "invalid_request"
    unauthenticated = await driver.http.patch(f"{driver.url}{path}", json={"end_user_id": "m"})
    assert unauthenticated.status_code == 401
    _, reader = await ApiKeys(db_vault).create("reader", "read")
    read_only = await driver.api(
        "PATCH", path, json={"end_user_id": "m"}, headers={"Authorization": f"Bearer {reader}"}
    )
    assert read_only.status_code == 403
    claimed = await driver.api("PATCH", path, json={"end_user_id": "m-1"})
    assert claimed.status_code == 200 and claimed.json()["end_user_id"] == "m-1"
    # Moving or releasing it names its current end user.
    moved = await driver.api(
        "PATCH", path, json={"end_user_id": "m-2", "expected_end_user_id": "m-1"}
    )
    assert moved.status_code == 200 and moved.json()["end_user_id"] == "m-2"
    assert (await driver.api("PATCH", path, json={"end_user_id": None})).status_code == 409
    released = await driver.api(
        "PATCH", path, json={"end_user_id": None, "expected_end_user_id": "m-2"}
    )
    assert released.status_code == 200 and released.json()["end_user_id"] is None


@pytest.mark.parametrize("provider", ["aliexpress", "tiktok_shop", "shopline"])
async def test_a_callback_without_state_is_refused_on_other_platforms(
    driver: Driver, provider: str
) -> None:
    before = await driver.snapshot()
    page = await driver.http.get(f"{driver.url}/oauth/callback/{provider}?code=abc&store_id=1")
    assert page.status_code == 400 and "no state" in page.text
    assert await driver.snapshot() == before


async def test_an_ecwid_callback_without_store_id_is_a_clear_400(driver: Driver) -> None:
    before = await driver.snapshot()
    for query in ("code=abc", "code=abc&store_id=12%2F..%2Fx"):
        page = await driver.http.get(f"{driver.url}/oauth/callback/ecwid?{query}")
        assert page.status_code == 400 and "store_id" in page.text, page.text
    assert await driver.snapshot() == before


@pytest.fixture
def returning_service(database_url: str, tmp_path: Path) -> Iterator[LiveService]:
    """The service with an install return URL configured."""
    from shopkeys.cli.serve import service_app
    from tests.live import reserve_socket, url_of

    sock = reserve_socket()
    url = url_of(sock)
    settings = make_settings(
        database_url,
        tmp_path / "data",
        public_url=url,
        ecwid_install_return_url="https://app.example/ecwid/installed?from=shopkeys",
    )
    app = service_app(settings, sandbox=True, sandbox_api_key=SERVICE_API_KEY)
    with serve(app, sock) as served:
        yield LiveService(url=served, api_key=SERVICE_API_KEY, app=app, settings=settings)


async def test_install_return_url_receives_the_connection(
    returning_service: LiveService, http: httpx2.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(db.database_url(database_url, tmp_path))
    try:
        await _returning(Driver(returning_service, http, Vault(engine, keys(tmp_path))))
    finally:
        await engine.dispose()


async def _returning(driver: Driver) -> None:
    http = driver.http
    location, body = await install(driver, "returning-shop")
    answer = await http.get(location)
    assert answer.status_code == 303
    target = answer.headers["location"]
    assert target.startswith("https://app.example/ecwid/installed?from=shopkeys&")
    params = callback_params(target)
    [connection] = await ecwid_connections(driver)
    assert params == {
        "from": "shopkeys",
        "connection_id": connection["id"],
        "provider": "ecwid",
        "account_id": body["store_id"],
    }


def keys(tmp_path: Path) -> KeyRing:
    return load_key_ring(TEST_KEYS, tmp_path).ring


async def test_an_install_whose_exchange_failed_can_be_retried(driver: Driver) -> None:
    """A failed exchange stored no token, so the same callback may be tried again."""
    simulator = driver.live.simulator("ecwid")
    simulator.faults.set("token", Fault(status=503, times=1))
    location, _ = await install(driver, "flaky-shop")
    failed = await driver.http.get(location)
    assert failed.status_code == 502 and FAILED_TITLE in failed.text
    assert await ecwid_connections(driver) == []
    retried = await driver.http.get(location)
    assert retried.status_code == 200, retried.text
    [connection] = await ecwid_connections(driver)
    stored = await driver.remember_tokens(connection["id"])
    await driver.token_works("ecwid", stored.access_token, connection["account_id"])


async def test_the_install_return_url_keeps_its_fragment_last(
    database_url: str, tmp_path: Path, http: httpx2.AsyncClient
) -> None:
    from shopkeys.cli.serve import service_app
    from tests.live import reserve_socket, url_of

    sock = reserve_socket()
    settings = make_settings(
        database_url,
        tmp_path / "data",
        public_url=url_of(sock),
        ecwid_install_return_url="https://app.example/welcome#step-2",
    )
    app = service_app(settings, sandbox=True, sandbox_api_key=SERVICE_API_KEY)
    with serve(app, sock) as url:
        answer = await http.post(f"{url}/sandbox/ecwid/_sandbox/install", json={"login": "frag"})
        done = await http.get(answer.json()["location"])
    assert done.status_code == 303
    target = done.headers["location"]
    assert target.startswith("https://app.example/welcome?connection_id=con_")
    assert target.endswith("#step-2")
