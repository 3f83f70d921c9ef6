"""Answers no platform sends end as a classified `ProviderError`, never another exception.

A gzip body that is not gzip, JSON that Python cannot read, times and lifetimes no credential
has, numbers that are not finite, credentials that could not be sent back: each used to escape as
an `httpx2.DecodingError`, `OverflowError`, `ValueError` or `UnicodeEncodeError` (a 500, with
nothing recorded). Covered for code exchange, refresh and identify on all four platforms.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from shopkeys.clock import MAX_LIFETIME
from shopkeys.errors import NotSupported, ProtocolError, ProviderError, RateLimited
from shopkeys.grant import Grant
from tests.providers.platforms import (
    BY_NAME,
    CALLS,
    NOW,
    PLATFORMS,
    RAW,
    SENT,
    Platform,
    answering,
    at_millis,
    at_seconds,
    calls_with_requests,
    exchange,
    put,
    refresh,
    success_body,
    text,
    token_answer,
)

#: Numbers that are no time and no lifetime: too large for `datetime`, negative, not finite,
#: too large for a float, or numeric text of the same.
IMPOSSIBLE_NUMBERS = [
    "1e20",
    "-1",
    "-1e20",
    "1e308",
    "1e400",
    "NaN",
    "Infinity",
    "-Infinity",
    "1" + "0" * 400,
    '"1e400"',
    '"nan"',
]

#: Values that cannot be an id: not finite, fractional, too long.
IMPOSSIBLE_IDS = ["1e20", "1e400", "NaN", "-Infinity", "1" + "0" * 400, json.dumps("x" * 200)]


def assert_clean(error: ProviderError) -> None:
    """The error carries no secret the call sent, and no URL."""
    for shown in (str(error), error.detail, repr(error)):
        for secret in SENT:
            assert secret not in shown
        assert "http://" not in shown and "https://" not in shown


def platform_calls() -> list[Any]:
    return [
        pytest.param(platform, call, id=f"{platform}-{call}")
        for platform, call in calls_with_requests()
    ]


# -- bodies that do not decode ----------------------------------------------------------------


@pytest.mark.parametrize(("platform", "call"), platform_calls())
async def test_a_gzip_body_that_is_not_gzip_is_a_protocol_error(
    platform: Platform, call: str
) -> None:
    broken = b"\x1f\x8b\x08\x00 this is not a gzip stream"
    async with answering(broken, headers={"content-encoding": "gzip"}) as http:
        with pytest.raises(ProtocolError) as caught:
            await CALLS[call](platform, http)
    assert "Content-Encoding" in str(caught.value)
    assert_clean(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"code": ' + "1" * 5000 + "}", id="integer-too-long-to-convert"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="nested-too-deeply"),
        pytest.param("\xff\xfe not text", id="not-text"),
    ],
)
@pytest.mark.parametrize(("platform", "call"), platform_calls())
async def test_json_python_cannot_read_is_a_protocol_error(
    platform: Platform, call: str, body: str
) -> None:
    for status in (200, 400):
        async with answering(body.encode("latin-1"), status=status) as http:
            with pytest.raises(ProviderError) as caught:
                await CALLS[call](platform, http)
        assert_clean(caught.value)
        if status == 200:
            assert isinstance(caught.value, ProtocolError)


# -- times and lifetimes ------------------------------------------------------------------------


def time_cases() -> list[Any]:
    return [
        pytest.param(platform, field, raw, id=f"{platform}-{field}-{raw[:12]}")
        for platform in PLATFORMS
        for field in platform.time_fields
        for raw in IMPOSSIBLE_NUMBERS
    ]


@pytest.mark.parametrize(("platform", "field", "raw"), time_cases())
async def test_an_impossible_time_or_lifetime_is_a_protocol_error_naming_it(
    platform: Platform, field: str, raw: str
) -> None:
    changes: dict[str, Any] = {field: RAW}
    if platform.name == "aliexpress":
        # AliExpress reads the seconds-left fields only when the absolute ones are missing.
        absolute = {"expires_in": "expire_time", "refresh_expires_in": "refresh_token_valid_time"}
        if field in absolute:
            changes[absolute[field]] = None
    body = text(token_answer(platform, changes), raw)
    for call in (exchange, refresh) if platform.refreshable else (exchange,):
        async with answering(body) as http:
            with pytest.raises(ProtocolError) as caught:
                await call(platform, http)
        assert repr(field) in caught.value.detail
        assert_clean(caught.value)


@pytest.mark.parametrize(
    ("platform", "changes", "expires"),
    [
        # The AliExpress sandbox's "never": 100 years.
        pytest.param(
            "aliexpress",
            {"expire_time": at_millis(NOW + timedelta(days=36525))},
            NOW + timedelta(days=36525),
            id="aliexpress-100-years",
        ),
        pytest.param(
            "aliexpress",
            {"expire_time": None, "expires_in": 0},
            NOW,
            id="aliexpress-no-life-left",
        ),
        pytest.param(
            "tiktok_shop",
            {"access_token_expire_in": at_seconds(NOW + MAX_LIFETIME)},
            NOW + MAX_LIFETIME,
            id="tiktok-the-longest-life",
        ),
        pytest.param(
            "shopline",
            {"expires_in": MAX_LIFETIME.total_seconds()},
            NOW + MAX_LIFETIME,
            id="shopline-the-longest-life",
        ),
    ],
)
async def test_long_but_possible_lifetimes_are_kept(
    platform: str, changes: dict[str, Any], expires: Any
) -> None:
    async with answering(text(token_answer(BY_NAME[platform], changes))) as http:
        grant = await exchange(BY_NAME[platform], http)
    assert grant.access_expires_at == expires


@pytest.mark.parametrize(
    ("platform", "changes"),
    [
        ("aliexpress", {"expire_time": at_millis(NOW + MAX_LIFETIME + timedelta(days=1))}),
        ("aliexpress", {"expire_time": None, "expires_in": -1}),
        ("tiktok_shop", {"access_token_expire_in": at_seconds(NOW + MAX_LIFETIME) + 86400}),
        ("shopline", {"expires_in": MAX_LIFETIME.total_seconds() + 1}),
        ("shopline", {"expires_in": -60}),
    ],
)
async def test_lifetimes_past_the_bounds_are_refused(
    platform: str, changes: dict[str, Any]
) -> None:
    async with answering(text(token_answer(BY_NAME[platform], changes))) as http:
        with pytest.raises(ProtocolError, match="between"):
            await exchange(BY_NAME[platform], http)


# -- ids and credentials ------------------------------------------------------------------------


def id_cases() -> list[Any]:
    return [
        pytest.param(platform, raw, id=f"{platform}-{raw[:12]}")
        for platform in PLATFORMS
        for raw in IMPOSSIBLE_IDS
    ]


@pytest.mark.parametrize(("platform", "raw"), id_cases())
async def test_an_impossible_account_id_at_identify_is_a_protocol_error_naming_it(
    platform: Platform, raw: str
) -> None:
    body = put(success_body(platform, "identify"), platform.account_id_path, RAW)
    async with answering(text(body, raw)) as http:
        with pytest.raises(ProtocolError) as caught:
            await CALLS["identify"](platform, http)
    assert repr(platform.account_id_path[-1]) in caught.value.detail
    assert_clean(caught.value)


def credential_cases() -> list[Any]:
    broken = {
        "non-ascii": json.dumps("tök-" + "a" * 20),
        "space": json.dumps("two words"),
        "newline": json.dumps("line\nbreak"),
        "lone-surrogate": '"abc\\udfffdef"',
        "nul": '"abc\\u0000def"',
        "too-long": json.dumps("a" * 5000),
        "number": "12345",
    }
    return [
        pytest.param(platform, field, raw, id=f"{platform}-{field}-{name}")
        for platform in PLATFORMS
        for field in platform.credential_fields
        for name, raw in broken.items()
    ]


@pytest.mark.parametrize(("platform", "field", "raw"), credential_cases())
async def test_a_credential_that_cannot_be_sent_back_is_a_protocol_error(
    platform: Platform, field: str, raw: str
) -> None:
    body = text(token_answer(platform, {field: RAW}), raw)
    async with answering(body) as http:
        with pytest.raises(ProtocolError) as caught:
            await exchange(platform, http)
    assert repr(field) in caught.value.detail
    assert_clean(caught.value)
    # The broken value itself is not repeated either: it is a credential, however broken.
    assert "two words" not in str(caught.value) and "aaaaaaaaaa" not in str(caught.value)


# -- what is kept is storable -------------------------------------------------------------------

#: Fields no provider reads, which land in `Grant.raw` and from there in the database and in
#: `GET /v1/connections/{id}`.
ODD_EXTRAS = (
    '"not_a_number": NaN, "endless": 1e400, "below": -Infinity, '
    '"text": "nul\\u0000 and lone \\udfff surrogate", "key\\u0000": 1, '
    '"nested": {"deeper": [Infinity, "\\ud800"]}, "deep": ' + "[" * 50 + "]" * 50
)


def storable(value: Any) -> None:
    """`value` can be written as strict JSON, as UTF-8, without NUL: any database takes it."""
    encoded = json.dumps(value, allow_nan=False, ensure_ascii=False)
    encoded.encode("utf-8")
    assert "\x00" not in encoded and "\\u0000" not in encoded


@pytest.mark.parametrize("platform", PLATFORMS, ids=str)
async def test_odd_values_nobody_reads_are_kept_in_a_storable_form(platform: Platform) -> None:
    fields = platform.token_fields()
    if "seller_name" in fields:
        fields["seller_name"] = "Demo\x00 Store \udfff"
    if "user_nick" in fields:
        fields["user_nick"] = "nick\x00\udfff"
    body = text(platform.token_body(fields))
    # Splice the extras into the object that holds the token fields.
    anchor = '"access_token": '
    body = body.replace(anchor, ODD_EXTRAS + ", " + anchor, 1)
    calls = (exchange, refresh) if platform.refreshable else (exchange,)
    for call in calls:
        async with answering(body) as http:
            grant: Grant = await call(platform, http)
        storable(grant.raw)
        storable(grant.scopes)
        storable([grant.account_id, grant.account_name])
        assert grant.raw["not_a_number"] is None and grant.raw["endless"] is None


async def test_a_ban_of_endless_seconds_is_no_wait() -> None:
    """AliExpress states its ban in words; a number too large for a float is no wait at all."""
    body = {
        "code": "ApiCallLimit",
        "type": "ISV",
        "message": "This ban will last " + "9" * 400 + " more seconds",
        "request_id": "x",
    }
    async with answering(text(body)) as http:
        with pytest.raises(RateLimited) as caught:
            await exchange(BY_NAME["aliexpress"], http)
    assert caught.value.retry_after is None


async def test_ecwid_refresh_stays_not_supported_whatever_the_answer() -> None:
    """Ecwid is left out of the refresh cases above: it has nothing to refresh."""
    async with answering(b"{}") as http:
        with pytest.raises(NotSupported):
            await refresh(BY_NAME["ecwid"], http)


@pytest.mark.parametrize(
    "body",
    [b'{"eventId": "e", "eventCreated": ' + b"1" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000],
    ids=["integer-too-long-to-convert", "nested-too-deeply"],
)
def test_an_ecwid_webhook_python_cannot_read_is_not_verified(body: bytes) -> None:
    provider = BY_NAME["ecwid"].provider()
    assert provider.verify_webhook({"X-Ecwid-Webhook-Signature": "c2ln"}, body) is False
