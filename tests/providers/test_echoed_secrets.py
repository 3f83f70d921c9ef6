"""A platform that echoes the request in its error gets none of the request's secrets repeated.

shopkeys stores and shows platform error text (`last_error`, events, the 409 body, the API's
connection view), so every provider cleans it before it builds the error: the client secret and
the code or token the call sent are replaced wherever they appear, and the log filter's patterns
catch the rest. Covered for code exchange, refresh and identify on all four platforms, and for
every shape of error answer each platform has.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from shopkeys.errors import ProviderError
from tests.providers.platforms import (
    ACCESS,
    CALLS,
    CODE,
    REFRESH,
    SECRET,
    SENT,
    Platform,
    answering,
    calls_with_requests,
)

#: What each call sends (AliExpress's identify runs the code exchange: its identity comes with
#: the token answer).
SENT_BY = {"exchange": CODE, "refresh": REFRESH, "identify": ACCESS}


def echo(platform: Platform, call: str) -> str:
    """The request repeated back in every shape servers print requests in.

    The key-shaped forms name every secret, whatever the call; the bare values are the ones this
    call sent, which only the provider can recognize.
    """
    sent = CODE if platform.identity_body is None and call == "identify" else SENT_BY[call]
    return " | ".join(
        [
            # A query string or form (TikTok's token GETs, AliExpress's and Ecwid's form POSTs).
            f"app_key=1&app_secret={SECRET}&client_secret={SECRET}&auth_code={CODE}&code={CODE}"
            f"&refresh_token={REFRESH}&access_token={ACCESS}&grant_type=x",
            # A JSON body (SHOPLINE's token POST), plain and escaped inside another string.
            json.dumps({"client_secret": SECRET, "refresh_token": REFRESH, "code": CODE}),
            json.dumps(json.dumps({"access_token": ACCESS, "client_secret": SECRET})),
            # Python and Ruby (Doorkeeper) hashes, and YAML-ish lines.
            f"{{'client_secret': '{SECRET}', 'refresh_token': '{REFRESH}'}}",
            f'{{"refresh_token"=>"{REFRESH}", "code"=>"{CODE}"}}',
            f"refresh_token: {REFRESH} client_secret: {SECRET} access_token: {ACCESS}",
            # Headers.
            f"Authorization: Bearer {ACCESS} x-tts-access-token: {ACCESS}",
            # The values alone: what this call sent, and the app's secret.
            f"you sent {sent} signed with {SECRET}",
        ]
    )


def error_answers(platform: Platform, message: str) -> list[tuple[int, dict[str, Any]]]:
    """Every shape of error answer the platform has, carrying `message` in its text fields."""
    if platform.name == "aliexpress":
        return [
            (200, {"code": "InvalidCode", "type": "ISV", "message": message, "request_id": "1"}),
            (200, {"code": "IllegalRefreshToken", "type": "ISV", "msg": message}),
            (200, {"code": "ApiCallLimit", "type": "ISV", "message": message}),
            (200, {"code": "SomethingNew", "type": "ISP", "message": message}),
            (200, {"code": message, "type": "ISV", "message": "echoed in the code"}),
            (400, {"code": "MissingParameter", "message": message}),
        ]
    if platform.name == "tiktok_shop":
        return [
            (200, {"code": 36004004, "message": message, "request_id": "1"}),
            (200, {"code": 36004001, "message": message}),
            (200, {"code": 36009002, "message": message}),
            (200, {"code": 123456, "message": message}),
            (401, {"code": 106001, "message": message}),
        ]
    if platform.name == "shopline":
        return [
            (400, {"error": "invalid_grant", "error_description": message}),
            (400, {"error": message}),
            (401, {"code": "TOKEN_EXPIRED", "message": message}),
            (401, {"error": "invalid_token", "message": message}),
            (403, {"message": message}),
        ]
    return [
        (400, {"error": "invalid_grant", "error_description": message}),
        (400, {"error": message}),
        (403, {"errorCode": "INVALID_API_TOKEN", "errorMessage": message}),
        (400, {"errorCode": message, "errorMessage": message}),
        (429, {"errorCode": "RATE_LIMITED", "errorMessage": message}),
        (402, {"errorMessage": message}),
    ]


def platform_calls() -> list[Any]:
    return [
        pytest.param(platform, call, id=f"{platform}-{call}")
        for platform, call in calls_with_requests()
    ]


@pytest.mark.parametrize(("platform", "call"), platform_calls())
async def test_an_error_that_echoes_the_request_repeats_no_secret(
    platform: Platform, call: str
) -> None:
    messages = []
    for status, body in error_answers(platform, echo(platform, call)):
        async with answering(json.dumps(body), status=status) as http:
            with pytest.raises(ProviderError) as caught:
                await CALLS[call](platform, http)
        error = caught.value
        shown = [str(error), error.detail, repr(error), error.code or ""]
        for secret in SENT:
            assert all(secret not in text for text in shown), (status, body, secret)
        messages.append(error.detail)
    # Cleaning keeps the platform's words around the secrets (where the call reads them).
    assert any("you sent [redacted] signed with [redacted]" in m for m in messages)


@pytest.mark.parametrize(("platform", "call"), platform_calls())
async def test_the_client_secret_is_replaced_in_any_error_text(
    platform: Platform, call: str
) -> None:
    """Even a message that only names the secret in passing, in a field a platform never sends."""
    message = f"nothing to see{SECRET}here"
    for status, body in error_answers(platform, message):
        async with answering(json.dumps(body), status=status) as http:
            with pytest.raises(ProviderError) as caught:
                await CALLS[call](platform, http)
        assert SECRET not in str(caught.value)
