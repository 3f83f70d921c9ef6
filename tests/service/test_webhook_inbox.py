"""The webhook inbox over a real socket: the simulators send webhooks signed as the platforms sign
them; shopkeys verifies, keeps each once, acts on the authorization ones and queues them for the
app, whose endpoint gets each once even when it was down when they arrived."""

from __future__ import annotations

import json
import random
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from shopkeys.clock import utc_now
from shopkeys.metrics import REGISTRY
from shopkeys.sandbox.core import SignedWebhook
from shopkeys.store.deliveries import DELIVERED
from shopkeys.store.tables import DeliveryRow, EventRow, WebhookReceiptRow
from shopkeys.store.vault import Vault
from tests.conftest import LiveService, serve_service
from tests.events.conftest import SECRET_VALUE, drain, sender
from tests.live import reserve_socket, serve, url_of
from tests.service import test_connect_flow as flow
from tests.service.test_connect_flow import Driver
from tests.store.conftest import FakeClock


@pytest.fixture
def app_endpoint() -> Iterator[socket.socket]:
    """Where the app's webhook endpoint will be: a port bound but not listening (refused)."""
    sock = reserve_socket()
    yield sock
    sock.close()


@pytest.fixture
def live_service(
    database_url: str, tmp_path: Path, app_endpoint: socket.socket
) -> Iterator[LiveService]:
    """The service with an app webhook URL (nobody listens there yet): events queue in the
    outbox, signed with the events tests' secret."""
    with serve_service(
        database_url,
        tmp_path / "data",
        webhook_url=url_of(app_endpoint) + "/hook",
        webhook_secret=SecretStr(SECRET_VALUE),
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


async def _deliver(driver: Driver, provider: str, webhook: SignedWebhook) -> Any:
    """POST a webhook whose URL carries a query (SHOPLINE's `sign`)."""
    url = webhook.url(f"{driver.url}/webhooks/{provider}")
    return await driver.http.post(url, headers=webhook.headers, content=webhook.body)


def _received(outcome: str) -> float:
    """TikTok Shop webhooks counted with `outcome` in the registry the live service counts in."""
    value = REGISTRY.get_sample_value(
        "shopkeys_webhooks_received_total", {"provider": "tiktok_shop", "outcome": outcome}
    )
    assert value is not None
    return value


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
    counted = {outcome: _received(outcome) for outcome in ("accepted", "duplicate")}

    first = await _post(driver, "tiktok_shop", webhook)
    assert first.status_code == 200 and first.json() == {"received": True, "duplicate": False}
    again = await _post(driver, "tiktok_shop", webhook)  # TikTok retrying it
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert _received("accepted") == counted["accepted"] + 1
    assert _received("duplicate") == counted["duplicate"] + 1

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


# -- SHOPLINE: the signature in the URL ---------------------------------------------------------


async def test_a_shopline_webhook_is_verified_kept_once_and_uninstall_revokes(
    driver: Driver,
) -> None:
    connection = await driver.connect("shopline")
    merchant = connection["account_id"]
    sim = driver.live.simulator("shopline")
    order = sim.signed_webhook(
        {"topic": "order/create", "merchant_id": merchant, "resource": {"total": 12.0}}
    )
    first = await _deliver(driver, "shopline", order)
    assert first.status_code == 200 and first.json() == {"received": True, "duplicate": False}
    again = await _deliver(driver, "shopline", order)  # SHOPLINE delivering it again
    assert again.status_code == 200 and again.json()["duplicate"] is True
    [forwarded] = await _forwarded(driver.vault)
    data = forwarded["data"]
    assert data["connection_id"] == connection["id"] and data["provider"] == "shopline"
    assert data["event_type"] == "order/create"
    assert data["event_id"] == json.loads(order.body)["trace_id"]
    assert data["payload"] == json.loads(order.body)

    uninstall = sim.signed_webhook({"topic": "application/uninstall", "merchant_id": merchant})
    assert (await _deliver(driver, "shopline", uninstall)).status_code == 200
    shown = (await driver.api("GET", f"/v1/connections/{connection['id']}")).json()
    assert shown["status"] == "revoked"
    assert (await driver.kinds(connection["id"]))[-2:] == ["webhook_received", "revoked"]
    assert (await driver.token(connection["id"])).status_code == 409


async def test_a_bad_shopline_sign_is_refused_and_nothing_kept(driver: Driver) -> None:
    connection = await driver.connect("shopline")
    sim = driver.live.simulator("shopline")
    sent = sim.signed_webhook(
        {"topic": "application/install", "merchant_id": connection["account_id"]}
    )
    before = await _count(driver.vault, select(func.count()).select_from(EventRow))
    forged = [
        SignedWebhook(sent.headers, sent.body, {"sign": "0" * 64}),
        SignedWebhook(sent.headers, sent.body),  # no sign at all
        SignedWebhook({}, sent.body, sent.query),  # no timestamp header
        SignedWebhook(sent.headers, sent.body.replace(b"install", b"uninstall"), sent.query),
    ]
    for webhook in forged:
        refused = await _deliver(driver, "shopline", webhook)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "bad_signature"
        assert sim.app.client_secret not in refused.text
    assert await _count(driver.vault, select(func.count()).select_from(EventRow)) == before
    assert await _count(driver.vault, select(func.count()).select_from(WebhookReceiptRow)) == 0
    shown = await driver.api("GET", f"/v1/connections/{connection['id']}")
    assert shown.json()["status"] == "active"


# -- the app's endpoint down, then up -----------------------------------------------------------


async def test_the_apps_endpoint_down_then_up_gets_every_delivery(
    driver: Driver, app_endpoint: socket.socket
) -> None:
    # The service's own sender is told to claim nothing: the test's sender, the same class on
    # the same URL and secret but on a clock the test moves, decides when each attempt happens.
    own = driver.live.runtime.sender
    assert own is not None and own.url == url_of(app_endpoint) + "/hook"
    own.concurrency = 0

    tiktok = await driver.connect("tiktok_shop")
    ecwid = await driver.connect("ecwid")
    shopline = await driver.connect("shopline")
    tiktok_sim = driver.live.simulator("tiktok_shop")
    ecwid_sim = driver.live.simulator("ecwid")
    shopline_sim = driver.live.simulator("shopline")
    order = tiktok_sim.signed_webhook({"type": 1, "shop_id": tiktok["shops"][0]["id"]})
    created = shopline_sim.signed_webhook(
        {"topic": "order/create", "merchant_id": shopline["account_id"]}
    )
    arriving = [
        ("tiktok_shop", order),
        ("tiktok_shop", order),  # a platform's retry: kept once
        (
            "ecwid",
            ecwid_sim.signed_webhook(
                {"eventType": "order.created", "storeId": int(ecwid["account_id"])}
            ),
        ),
        ("ecwid", ecwid_sim.signed_webhook({"eventType": "order.created", "storeId": 404})),
        ("shopline", created),
        ("shopline", created),
        (
            "shopline",
            shopline_sim.signed_webhook(
                {"topic": "application/uninstall", "merchant_id": shopline["account_id"]}
            ),
        ),
    ]
    for provider, webhook in arriving:
        assert (await _deliver(driver, provider, webhook)).status_code == 200
    queued = await driver.vault.deliveries.recent(limit=1000)
    received_ids = {d.id for d in queued if d.type == "webhook.received"}
    assert len(received_ids) == 5

    verifier = Webhook(SECRET_VALUE)
    answers: list[Response] = [PlainTextResponse("starting", status_code=503)]
    accepted: list[tuple[str, dict[str, Any]]] = []
    unverified: list[str] = []

    async def hook(request: Request) -> Response:
        body = (await request.body()).decode()
        headers = request.headers
        # Checked as the reference library signs, at the attempt's own time: its `verify`
        # compares the timestamp with the real clock, and the sender's clock is the test's.
        sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
        if headers["webhook-signature"] != verifier.sign(headers["webhook-id"], sent_at, body):
            unverified.append(headers["webhook-id"])
        answer = answers.pop(0) if answers else Response(status_code=204)
        if answer.status_code == 204:
            accepted.append((headers["webhook-id"], json.loads(body)))
        return answer

    clock = FakeClock(utc_now())
    async with httpx2.AsyncClient(timeout=10) as http:
        send = sender(driver.vault, http, clock, url=own.url, random=random.Random(5).random)
        # Down: every connection's first event is tried, refused, and scheduled again.
        assert await send.run_once() > 0
        tried = [d for d in await driver.vault.deliveries.recent(limit=1000) if d.attempts]
        assert tried and {d.last_error for d in tried} == {"could not connect"}
        app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        with serve(app, app_endpoint):
            await drain(send, driver.vault, clock)

    assert unverified == []
    counted = Counter(delivery_id for delivery_id, _ in accepted)
    assert set(counted) == {d.id for d in queued} and set(counted.values()) == {1}
    forwarded = [payload for _, payload in accepted if payload["type"] == "webhook.received"]
    assert len(forwarded) == len(received_ids) == 5
    assert sorted(p["data"]["provider"] for p in forwarded) == [
        "ecwid",
        "ecwid",
        "shopline",
        "shopline",
        "tiktok_shop",
    ]
    stored = await driver.vault.deliveries.recent(limit=1000)
    assert {d.status for d in stored} == {DELIVERED}
