"""Reading the platforms' webhooks: verified first, then their id, type, account and effect.

The webhooks come from the simulators, which sign them with their own code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shopkeys.platform import Platform
from shopkeys.providers.inbound import BadSignature, Effect, MalformedWebhook
from shopkeys.providers.tiktok_shop import webhook_signature
from tests.conftest import LiveSandbox


def test_a_tiktok_deauthorization_revokes(live_sandbox: LiveSandbox) -> None:
    sim, tts = live_sandbox.simulator("tiktok_shop"), live_sandbox.provider("tiktok_shop")
    headers, body = sim.webhook({"type": 6, "shop_id": "7494049642642441000"})
    read = tts.read_webhook(headers, body)
    assert read.provider == Platform.TIKTOK_SHOP and read.event_type == "6"
    assert read.shop_id == "7494049642642441000" and read.account_id is None
    assert read.event_id == json.loads(body)["tts_notification_id"]
    assert read.effect is Effect.REVOKED and read.deadline is None
    assert read.payload == json.loads(body)


def test_a_tiktok_expiring_authorization_says_when(live_sandbox: LiveSandbox) -> None:
    sim, tts = live_sandbox.simulator("tiktok_shop"), live_sandbox.provider("tiktok_shop")
    headers, body = sim.webhook(
        {"type": 7, "shop_id": "1", "data": {"message": "…", "expiration_time": "1627587506"}}
    )
    read = tts.read_webhook(headers, body)
    assert read.effect is Effect.REAUTH_DUE
    assert read.deadline == datetime.fromtimestamp(1627587506, UTC)
    # The simulator's own type-7 shape, as documented, reads too.
    assert tts.read_webhook(*sim.webhook({"type": 7, "shop_id": "1"})).deadline is not None
    other = tts.read_webhook(*sim.webhook({"type": 1, "shop_id": "1", "data": {"order": 5}}))
    assert other.effect is Effect.NONE and other.event_type == "1"


@pytest.mark.parametrize(
    "change",
    [
        {"tts_notification_id": None},
        {"tts_notification_id": ""},
        {"shop_id": None},
        {"type": "6"},
        {"type": True},
        {"type": 7, "data": {"expiration_time": "soon"}},
        {"type": 7, "data": {"expiration_time": "9" * 30}},
        {"type": 7, "data": []},
    ],
)
def test_a_signed_tiktok_webhook_of_the_wrong_shape(
    live_sandbox: LiveSandbox, change: dict[str, object]
) -> None:
    sim, tts = live_sandbox.simulator("tiktok_shop"), live_sandbox.provider("tiktok_shop")
    message = {"type": 6, "tts_notification_id": "1", "shop_id": "1", "timestamp": 1, "data": {}}
    message.update(change)
    body = json.dumps({k: v for k, v in message.items() if v is not None}).encode()
    signed = webhook_signature(sim.app.client_id, sim.app.client_secret, body)
    with pytest.raises(MalformedWebhook):
        tts.read_webhook({"Authorization": signed}, body)
    for not_an_object in (b"[]", b"not json", b"\xff"):
        signed = webhook_signature(sim.app.client_id, sim.app.client_secret, not_an_object)
        with pytest.raises(MalformedWebhook):
            tts.read_webhook({"Authorization": signed}, not_an_object)


def test_an_unsigned_or_altered_tiktok_webhook_is_refused(live_sandbox: LiveSandbox) -> None:
    sim, tts = live_sandbox.simulator("tiktok_shop"), live_sandbox.provider("tiktok_shop")
    headers, body = sim.webhook({"type": 6, "shop_id": "1"})
    for bad_headers, bad_body in (
        ({}, body),
        (headers, body.replace(b'"type":6', b'"type":1')),
        ({"Authorization": "0" * 64}, body),
    ):
        with pytest.raises(BadSignature) as refused:
            tts.read_webhook(bad_headers, bad_body)
        assert sim.app.client_secret not in str(refused.value)


def test_an_ecwid_uninstall_revokes(live_sandbox: LiveSandbox) -> None:
    sim, ecwid = live_sandbox.simulator("ecwid"), live_sandbox.provider("ecwid")
    headers, body = sim.webhook(
        {"eventType": "application.uninstalled", "storeId": 1003, "entityId": "1003"}
    )
    read = ecwid.read_webhook(headers, body)
    assert read.account_id == "1003" and read.shop_id is None
    assert read.event_type == "application.uninstalled" and read.effect is Effect.REVOKED
    assert read.event_id == json.loads(body)["eventId"]
    order = ecwid.read_webhook(*sim.webhook({"eventType": "order.created", "storeId": 1003}))
    assert order.effect is Effect.NONE


def test_ecwid_webhooks_of_the_wrong_shape_or_signature(live_sandbox: LiveSandbox) -> None:
    sim, ecwid = live_sandbox.simulator("ecwid"), live_sandbox.provider("ecwid")
    headers, body = sim.webhook({"eventType": "order.created", "storeId": 1003})
    with pytest.raises(BadSignature):
        ecwid.read_webhook({}, body)
    with pytest.raises(BadSignature):
        ecwid.read_webhook(headers, body.replace(b'"eventId": "', b'"eventId": "x'))
    # The signature covers eventCreated and eventId only: what else is wrong is a bad shape.
    for change in ({"eventType": ""}, {"storeId": None}, {"storeId": True}):
        event = {**json.loads(body), **change}
        with pytest.raises(MalformedWebhook):
            ecwid.read_webhook(headers, json.dumps(event).encode())


def test_platforms_without_signed_webhooks_are_not_read_here(live_sandbox: LiveSandbox) -> None:
    from shopkeys.errors import NotSupported

    for name in ("aliexpress", "shopline"):
        with pytest.raises(NotSupported):
            live_sandbox.provider(name).read_webhook({}, b"{}")
