"""Standard Webhooks signing, checked against the reference library (`standardwebhooks`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shopkeys.clock import utc_now
from shopkeys.crypto import KeyRing
from shopkeys.events.signing import encode_body, sign, webhook_headers
from shopkeys.store.recording import APP_EVENT_TYPES, record_event
from shopkeys.store.tables import ConnectionRow
from shopkeys.store.vault import Vault
from tests.conftest import TEST_KEYS
from tests.events.conftest import SECRET, SECRET_VALUE, Receiver, connect, sender
from tests.store.conftest import FakeClock

# The example of the Standard Webhooks libraries' own tests: the same inputs, the same signature.
REFERENCE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REFERENCE_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
REFERENCE_TIMESTAMP = 1614265330
REFERENCE_BODY = '{"test": 2432232314}'
REFERENCE_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_reference_example() -> None:
    key = base64.b64decode(REFERENCE_SECRET.removeprefix("whsec_"))
    assert sign(key, REFERENCE_ID, REFERENCE_TIMESTAMP, REFERENCE_BODY) == REFERENCE_SIGNATURE


def test_signature_is_hmac_sha256_of_id_timestamp_and_body() -> None:
    expected = hmac.new(SECRET.key, b"msg_1.1700000000.{}", hashlib.sha256).digest()
    assert sign(SECRET.key, "msg_1", 1700000000, "{}") == "v1," + base64.b64encode(expected).decode(
        "ascii"
    )


def test_headers_verify_with_the_reference_library() -> None:
    now = int(utc_now().timestamp())
    body = encode_body({"type": "connection.created", "timestamp": "t", "data": {"é": "ü"}})
    headers = dict(webhook_headers(SECRET.key, "msg_abc", now, body))
    assert headers["webhook-id"] == "msg_abc"
    assert headers["webhook-timestamp"] == str(now)
    assert headers["content-type"] == "application/json"
    assert Webhook(SECRET_VALUE).verify(body, headers) == json.loads(body)
    # Any change to what is signed fails.
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_VALUE).verify(body.replace("connection", "connexion"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_VALUE).verify(body, {**headers, "webhook-id": "msg_abd"})


def test_body_is_compact_ascii_json() -> None:
    body = encode_body({"type": "a.b", "data": {"name": "Café", "n": [1, 2]}})
    assert body == '{"type":"a.b","data":{"name":"Caf\\u00e9","n":[1,2]}}'
    assert body.isascii()


@pytest.fixture
def real_time() -> FakeClock:
    """A clock at the real time: the library refuses timestamps more than 5 minutes off."""
    return FakeClock(utc_now().replace(microsecond=0))


async def test_every_event_type_is_delivered_verifiably(
    engine: AsyncEngine, real_time: FakeClock
) -> None:
    vault = Vault(engine, KeyRing.parse(TEST_KEYS), clock=real_time, outbox=True)
    connection = await connect(vault)
    details = {"refresh_failed": {"error": "HTTP 503 from the platform"}}
    async with AsyncSession(engine) as session, session.begin():
        row = await session.get(ConnectionRow, connection.id)
        assert row is not None
        for kind in APP_EVENT_TYPES:
            if kind != "connected":  # `connect` recorded that one
                await record_event(
                    session, row, kind, real_time(), details.get(kind, {}), outbox=True
                )
    receiver = Receiver()
    async with receiver.client() as http:
        send = sender(vault, http, real_time)
        while await send.run_once():
            pass
    assert [r.payload["type"] for r in receiver.accepted] == [
        APP_EVENT_TYPES[kind] for kind in APP_EVENT_TYPES
    ]
    webhook = Webhook(SECRET_VALUE)
    for received in receiver.accepted:
        payload = webhook.verify(received.body, received.headers)
        assert payload["data"]["connection_id"] == connection.id
        assert payload["timestamp"] == real_time().isoformat()
        assert datetime.fromtimestamp(int(received.headers["webhook-timestamp"]), UTC) == (
            real_time()
        )
    reconnected = receiver.accepted[1].payload
    assert reconnected["type"] == "connection.created"
    assert reconnected["data"]["reconnected"] is True
