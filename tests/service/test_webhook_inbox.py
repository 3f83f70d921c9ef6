"""The webhook inbox over a real socket: the simulators send webhooks signed as the platforms sign
them; shopkeys verifies, keeps each once, acts on the authorization ones and queues them for the
app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from shopkeys.store.tables import DeliveryRow, EventRow, WebhookReceiptRow
from shopkeys.store.vault import Vault
from tests.conftest import LiveService, serve_service
from tests.service import test_connect_flow as flow
from tests.service.test_connect_flow import Driver


@pytest.fixture
def live_service(database_url: str, tmp_path: Path) -> Iterator[LiveService]:
    """The service with an app webhook URL (nobody listens there): events queue in the outbox."""
    with serve_service(
        database_url, tmp_path / "data", webhook_url="http://127.0.0.1:9/hook"
    ) as live:
        yield live


# The end-to-end test's fixtures, on this module's service (which has a webhook URL).
db_vault = flow.db_vault
driver = flow.driver


async def _post(driver: Driver, provider: str, webhook: tuple[dict[str, str], bytes]) -> Any:
    headers, body = webhook
    return await driver.http.post(
        f"{driver.url}/webhooks/{provider}", headers=headers, content=body
    )


async def _count(vault: Vault, query: Any) -> int:
    async with vault.engine.connect() as connection:
        return int(await connection.scalar(query) or 0)


async def _forwarded(vault: Vault) -> list[dict[str, Any]]:
    async with vault.engine.connect() as connection:
        rows = await connection.execute(
            select(DeliveryRow.payload).where(DeliveryRow.type == "webhook.received")
        )
        return [row.payload for row in rows]


async def test_a_verified_webhook_reaches_the_app_once(driver: Driver) -> None:
    connection = await driver.connect("tiktok_shop")
    shop_id = connection["shops"][0]["id"]
    sim = driver.live.simulator("tiktok_shop")
    webhook = sim.webhook({"type": 1, "shop_id": shop_id, "data": {"order_id": "576"}})

    first = await _post(driver, "tiktok_shop", webhook)
    assert first.status_code == 200 and first.json() == {"received": True, "duplicate": False}
    again = await _post(driver, "tiktok_shop", webhook)  # TikTok retrying it
    assert again.status_code == 200 and again.json()["duplicate"] is True

    [forwarded] = await _forwarded(driver.vault)
    assert forwarded["type"] == "webhook.received"
    data = forwarded["data"]
    assert data["connection_id"] == connection["id"] and data["provider"] == "tiktok_shop"
    assert data["event_type"] == "1"
    assert data["payload"] == json.loads(webhook[1])
    assert data["event_id"] == json.loads(webhook[1])["tts_notification_id"]
    assert (await driver.kinds(connection["id"]))[-1] == "webhook_received"
    assert (await driver.api("GET", f"/v1/connections/{connection['id']}")).json()[
        "status"
    ] == "active"


async def test_a_bad_signature_is_refused_and_nothing_kept(driver: Driver) -> None:
    connection = await driver.connect("ecwid")
    sim = driver.live.simulator("ecwid")
    headers, body = sim.webhook(
        {"eventType": "application.uninstalled", "storeId": int(connection["account_id"])}
    )
    before = await _count(driver.vault, select(func.count()).select_from(EventRow))
    for forged in ({**headers, "X-Ecwid-Webhook-Signature": "AAAA"}, {"content-type": "x"}):
        refused = await _post(driver, "ecwid", (forged, body))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "bad_signature"
    assert await _count(driver.vault, select(func.count()).select_from(EventRow)) == before
    assert await _count(driver.vault, select(func.count()).select_from(WebhookReceiptRow)) == 0
    shown = await driver.api("GET", f"/v1/connections/{connection['id']}")
    assert shown.json()["status"] == "active"


async def test_deauthorization_and_uninstall_revoke(driver: Driver) -> None:
    tiktok = await driver.connect("tiktok_shop")
    ecwid = await driver.connect("ecwid")
    deauthorized = driver.live.simulator("tiktok_shop").webhook(
        {"type": 6, "shop_id": tiktok["shops"][0]["id"]}
    )
    uninstalled = driver.live.simulator("ecwid").webhook(
        {"eventType": "application.uninstalled", "storeId": int(ecwid["account_id"])}
    )
    assert (await _post(driver, "tiktok_shop", deauthorized)).status_code == 200
    assert (await _post(driver, "ecwid", uninstalled)).status_code == 200
    for connection in (tiktok, ecwid):
        shown = (await driver.api("GET", f"/v1/connections/{connection['id']}")).json()
        assert shown["status"] == "revoked"
        assert (await driver.kinds(connection["id"]))[-2:] == ["webhook_received", "revoked"]
        assert driver.live.runtime.tokens  # the cache heard of it: the token is refused now
        refused = await driver.token(connection["id"])
        assert refused.status_code == 409
    types = [p["type"] for p in await _forwarded(driver.vault)]
    assert types == ["webhook.received", "webhook.received"]


async def test_an_expiring_authorization_warns_the_app_once(driver: Driver) -> None:
    connection = await driver.connect("tiktok_shop")
    sim = driver.live.simulator("tiktok_shop")
    expiring = {"type": 7, "shop_id": connection["shops"][0]["id"]}
    # TikTok sends it daily until the seller re-authorizes: the same deadline warns once.
    first = sim.webhook({**expiring, "data": {"message": "…", "expiration_time": "1900000000"}})
    second = sim.webhook({**expiring, "data": {"message": "…", "expiration_time": "1900000000"}})
    for webhook in (first, second):
        assert (await _post(driver, "tiktok_shop", webhook)).status_code == 200
    events = await driver.events(connection["id"])
    due = [e for e in events if e["kind"] == "reauth_due"]
    assert len(due) == 1 and due[0]["detail"]["deadline"] == "2030-03-17T17:46:40+00:00"
    assert [e["kind"] for e in events].count("webhook_received") == 2


async def test_a_webhook_for_no_connection_here_is_kept_and_forwarded(driver: Driver) -> None:
    webhook = driver.live.simulator("tiktok_shop").webhook({"type": 1, "shop_id": "404"})
    assert (await _post(driver, "tiktok_shop", webhook)).json()["duplicate"] is False
    [forwarded] = await _forwarded(driver.vault)
    assert forwarded["data"]["connection_id"] is None
    assert forwarded["data"]["provider"] == "tiktok_shop"


@pytest.mark.parametrize(
    ("provider", "body", "status", "code"),
    [
        ("amazon", b"{}", 404, "not_found"),
        ("aliexpress", b"{}", 404, "not_supported"),
        ("ecwid", b"not json", 401, "bad_signature"),
        ("tiktok_shop", b"x" * 300_000, 413, None),  # over the pages' and webhooks' 256 KiB
    ],
)
async def test_what_is_not_a_webhook_gets_a_clear_refusal(
    driver: Driver, provider: str, body: bytes, status: int, code: str | None
) -> None:
    answer = await driver.http.post(f"{driver.url}/webhooks/{provider}", content=body)
    assert answer.status_code == status
    if code is not None:
        assert answer.json()["error"]["code"] == code
