"""Reading the platforms' webhooks: verified first, then their id, type, account and effect.

The webhooks come from the simulators, which sign them with their own code; SHOPLINE's are also
checked against the worked example of its docs and against signatures Node computed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shopkeys.platform import Platform
from shopkeys.providers import AppCredentials
from shopkeys.providers.inbound import BadSignature, Effect, MalformedWebhook
from shopkeys.providers.shopline import Shopline, js_json
from shopkeys.providers.shopline import webhook_signature as shopline_signature
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

    with pytest.raises(NotSupported):
        live_sandbox.provider("aliexpress").read_webhook({}, b"{}")


# -- SHOPLINE: signed in the URL over the timestamp header and the re-sorted body ----------------

#: The worked example of https://shopline-developers.readme.io/docs/webhook-signature, verbatim.
DOCS_SECRET = "b5138dd0a7c04f674260e1d3b3a762347421396fc5fc1bee55a2c2653c4207bd"
DOCS_TIMESTAMP = "1618994178"
DOCS_PAYLOAD = {
    "event": "Application",
    "merchant_id": "5dad5d2604515400018dcc90",
    "resource": {
        "_id": "607fd9c2ff790b001cd23353",
        "merchant_id": "5dad5d2604515400018dcc90",
        "updated_at": "2021-04-21T08:36:17.892Z",
    },
    "topic": "application/uninstall",
}
DOCS_SIGN = "ae8b68f6a26d8f95290c761d10dbce01c775fd4d734e942e643aee20c86ebf4b"

#: A body with every number and string JavaScript writes its own way, and what Node 18 printed
#: for `JSON.stringify(sortByKeys(JSON.parse(body)))` (sortByKeys recursing into arrays) and the
#: HMAC of `1700000000:` + that, keyed "shopline-test-secret".
TRICKY_BODY = (
    r'{"z":[{"b":1.0,"a":-0.0}],"b":1e21,"c":1e-7,"d":0.000001,"e":12345678901234567890,'
    r'"f":"ü/😀\u2028\u0001\"\\\t","10":"ten","9":"nine","a":123.4560,"\uffff":1,"😀":2,'
    r'"g":1e400,"h":true,"i":null,"j":[],"k":{},"l":"\ud800","m":5e-324,"n":0.1,'
    r'"o":1.7976931348623157e308,"p":100,"q":1E2}'
)
TRICKY_NODE = (
    '{"9":"nine","10":"ten","a":123.456,"b":1e+21,"c":1e-7,"d":0.000001,'
    '"e":12345678901234567000,"f":"ü/😀\u2028\\u0001\\"\\\\\\t","g":null,"h":true,'
    '"i":null,"j":[],"k":{},"l":"\\ud800","m":5e-324,"n":0.1,'
    '"o":1.7976931348623157e+308,"p":100,"q":100,"z":[{"a":0,"b":1}],"😀":2,"\uffff":1}'
)
TRICKY_SIGN = "18a4e416645c0014296477c8c05b1eb631bbc6c3b122a32995bd3dd6de5d4222"
#: Objects inside arrays: Node's signature when the sort enters arrays, and when it does not.
ARRAYS_BODY = (
    b'{"topic":"order/create","trace_id":"t-1","merchant_id":"m","resource":{"items":'
    b'[{"sku":"b","price":1.0,"qty":2},{"z":1,"a":[{"y":1,"x":2}]}]}}'
)
ARRAYS_SORTED_SIGN = "c99e4b7d9ead6356cb18b904e2622978a0af24fbcbdb4aa7f94e95be3d8d2715"
ARRAYS_AS_SENT_SIGN = "444584000cd478c56128f896e9f40d569c91a2fe6ed7397b7021057e8a621ec0"
TEST_SECRET = "shopline-test-secret"


def _shopline(secret: str = TEST_SECRET) -> Shopline:
    return Shopline(AppCredentials(client_id="app", client_secret=secret))


def _signed(timestamp: str, sign: str) -> tuple[dict[str, str], dict[str, str]]:
    return {"X-Shopline-Developer-Event-Timestamp": timestamp}, {"sign": sign}


def test_the_docs_example_signs_as_the_docs_say() -> None:
    assert shopline_signature(DOCS_SECRET, DOCS_TIMESTAMP, DOCS_PAYLOAD) == DOCS_SIGN
    provider = _shopline(DOCS_SECRET)
    # The body as a platform might send it: pretty-printed, keys in another order.
    body = json.dumps(dict(reversed(DOCS_PAYLOAD.items())), indent=2).encode()
    headers, query = _signed(DOCS_TIMESTAMP, DOCS_SIGN)
    assert provider.verify_webhook(headers, body, query=query)
    assert provider.verify_webhook(headers, body, query={"sign": DOCS_SIGN.upper()})
    # Verified, but the example carries no trace_id, which every real delivery has.
    with pytest.raises(MalformedWebhook, match="trace_id"):
        provider.read_webhook(headers, body, query=query)


def test_numbers_and_strings_are_written_as_javascript_writes_them() -> None:
    value = json.loads(TRICKY_BODY, parse_int=float, parse_float=float)
    assert js_json(value) == TRICKY_NODE
    headers, query = _signed("1700000000", TRICKY_SIGN)
    assert _shopline().verify_webhook(headers, TRICKY_BODY.encode(), query=query)
    # Python's own reading of the body writes 1.0, 1e+21 and the big integer otherwise.
    assert json.dumps(json.loads(TRICKY_BODY), sort_keys=True) != TRICKY_NODE


@pytest.mark.parametrize("sign", [ARRAYS_SORTED_SIGN, ARRAYS_AS_SENT_SIGN])
def test_objects_inside_arrays_sorted_or_not(sign: str) -> None:
    headers, query = _signed("1700000000", sign)
    read = _shopline().read_webhook(headers, ARRAYS_BODY, query=query)
    assert read.event_id == "t-1" and read.account_id == "m" and read.effect is Effect.NONE


def test_a_shopline_uninstall_revokes(live_sandbox: LiveSandbox) -> None:
    sim, shopline = live_sandbox.simulator("shopline"), live_sandbox.provider("shopline")
    merchant = "5dad5d2604515400018dcc90"
    sent = sim.signed_webhook(
        {"topic": "application/uninstall", "merchant_id": merchant, "resource": {"n": 1.0}}
    )
    assert set(sent.query) == {"sign"} and "sign" not in sent.body.decode()
    read = shopline.read_webhook(sent.headers, sent.body, query=sent.query)
    event = json.loads(sent.body)
    assert read.provider == Platform.SHOPLINE and read.event_type == "application/uninstall"
    assert read.event_id == event["trace_id"] and read.account_id == merchant
    assert read.shop_id is None and read.effect is Effect.REVOKED and read.payload == event
    for topic in ("access_token/revoke", "order/create", "application/install"):
        other = sim.signed_webhook({"topic": topic, "merchant_id": merchant})
        assert shopline.read_webhook(other.headers, other.body, query=other.query).effect is (
            Effect.NONE
        )


def test_an_unsigned_or_altered_shopline_webhook_is_refused(live_sandbox: LiveSandbox) -> None:
    sim, shopline = live_sandbox.simulator("shopline"), live_sandbox.provider("shopline")
    sent = sim.signed_webhook({"topic": "order/create", "merchant_id": "m1"})
    timestamp = sent.headers["X-Shopline-Developer-Event-Timestamp"]
    later = str(int(timestamp) + 1)
    for headers, body, query in (
        (sent.headers, sent.body, {}),  # no sign
        (sent.headers, sent.body, {"sign": ""}),
        (sent.headers, sent.body, {"sign": "0" * 64}),
        ({"Content-Type": "application/json"}, sent.body, sent.query),  # no timestamp
        ({"X-Shopline-Developer-Event-Timestamp": later}, sent.body, sent.query),
        (sent.headers, sent.body.replace(b'"m1"', b'"m2"'), sent.query),
        (sent.headers, b"not json", sent.query),
        (sent.headers, b'{"a": NaN}', sent.query),
    ):
        with pytest.raises(BadSignature) as refused:
            shopline.read_webhook(headers, body, query=query)
        assert sim.app.client_secret not in str(refused.value)
    # Signed with another app's secret.
    forged = shopline_signature("not-the-secret", timestamp, json.loads(sent.body))
    with pytest.raises(BadSignature):
        shopline.read_webhook(sent.headers, sent.body, query={"sign": forged})


@pytest.mark.parametrize(
    "change",
    [
        {"trace_id": None},
        {"trace_id": ""},
        {"trace_id": 1.5},
        {"topic": None},
        {"topic": ""},
        {"topic": ["application/uninstall"]},
        {"merchant_id": True},
        {"merchant_id": {"id": "m"}},
    ],
)
def test_a_signed_shopline_webhook_of_the_wrong_shape(change: dict[str, object]) -> None:
    event = {"trace_id": "t-1", "topic": "order/create", "merchant_id": "m", "resource": {}}
    event.update(change)
    event = {k: v for k, v in event.items() if v is not None}
    sign = shopline_signature(TEST_SECRET, "1", event)
    headers, query = _signed("1", sign)
    with pytest.raises(MalformedWebhook):
        _shopline().read_webhook(headers, json.dumps(event).encode(), query=query)
    for not_an_object in ([], "text", 5):
        sign = shopline_signature(TEST_SECRET, "1", not_an_object)
        headers, query = _signed("1", sign)
        with pytest.raises(MalformedWebhook):
            _shopline().read_webhook(headers, json.dumps(not_an_object).encode(), query=query)


def test_a_shopline_webhook_without_a_merchant_names_no_account() -> None:
    event = {"trace_id": "t-2", "topic": "merchant/update"}
    headers, query = _signed("1", shopline_signature(TEST_SECRET, "1", event))
    read = _shopline().read_webhook(headers, json.dumps(event).encode(), query=query)
    assert read.account_id is None and read.event_type == "merchant/update"
