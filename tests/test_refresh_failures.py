"""A failed refresh stores no secret, whatever the platform's error repeats.

`last_error` and the failure's event are shown to apps (`GET /v1/connections/{id}`, the events
route, the 409 body) with a `read` key. The provider cleans what it sent (the client secret and
the refresh token); the token service also replaces the connection's stored tokens, since a
platform knows the access token too and may echo it though a refresh never sends it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from shopkeys.errors import AuthorizationDead, ProviderError, RequestRejected
from shopkeys.grant import Account, Grant
from shopkeys.runtime import Runtime, open_runtime
from tests.conftest import make_settings
from tests.providers.platforms import ACCESS, CODE, NOW, REFRESH, SECRET, SENT

ECHO = (
    f"app_secret={SECRET}&refresh_token={REFRESH}&code={CODE} "
    + json.dumps({"client_secret": SECRET, "refresh_token": REFRESH, "access_token": ACCESS})
    + f" refresh_token: {REFRESH} | {{'access_token': '{ACCESS}'}}"
    + f" | and bare: {SECRET} {REFRESH} {ACCESS}"
)

#: Per platform: its settings, and its error answers that mean "dead" and "not dead".
PLATFORMS: dict[str, tuple[dict[str, str], dict[bool, tuple[int, dict[str, Any]]]]] = {
    "aliexpress": (
        {"aliexpress_app_key": "500100", "aliexpress_app_secret": SECRET},
        {
            True: (200, {"code": "IllegalRefreshToken", "type": "ISV", "message": ECHO}),
            False: (200, {"code": "MissingParameter", "type": "ISV", "message": ECHO}),
        },
    ),
    "tiktok_shop": (
        {
            "tiktok_shop_app_key": "6abcdef12345",
            "tiktok_shop_app_secret": SECRET,
            "tiktok_shop_service_id": "7301234567890123456",
        },
        {
            True: (200, {"code": 36004001, "message": ECHO, "request_id": "1"}),
            False: (200, {"code": 106001, "message": ECHO, "request_id": "1"}),
        },
    ),
    "shopline": (
        {"shopline_client_id": "client-id-123", "shopline_client_secret": SECRET},
        {
            True: (400, {"error": "invalid_grant", "error_description": ECHO}),
            False: (401, {"error": "invalid_client", "error_description": ECHO}),
        },
    ),
}


@pytest.fixture
async def opened() -> AsyncIterator[list[Runtime]]:
    """Runtimes opened by the test, closed after it."""
    opened: list[Runtime] = []
    yield opened
    for runtime in opened:
        await runtime.close()


async def open_for(
    opened: list[Runtime],
    database_url: str,
    tmp_path: Path,
    platform: str,
    answer: tuple[int, dict[str, Any]],
) -> Runtime:
    settings_values, _ = PLATFORMS[platform]
    status, body = answer

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    runtime = await open_runtime(
        make_settings(database_url, tmp_path / "data", **settings_values),
        clock=lambda: NOW,
        transport=httpx2.MockTransport(handler),
    )
    opened.append(runtime)
    return runtime


@pytest.mark.parametrize("dead", [True, False], ids=["dead", "not-dead"])
@pytest.mark.parametrize("platform", list(PLATFORMS))
async def test_a_failed_refresh_stores_no_secret(
    opened: list[Runtime], database_url: str, tmp_path: Path, platform: str, dead: bool
) -> None:
    runtime = await open_for(opened, database_url, tmp_path, platform, PLATFORMS[platform][1][dead])
    expired = Grant(
        provider=platform,
        access_token=ACCESS,
        refresh_token=REFRESH,
        access_expires_at=NOW - timedelta(hours=1),
        refresh_expires_at=NOW + timedelta(days=30),
        scopes=[],
        account_id="account-1",
    )
    connection, _ = await runtime.vault.connections.upsert(
        expired, Account("account-1", "Demo"), end_user_id="merchant-1"
    )

    with pytest.raises(ProviderError) as caught:
        await runtime.tokens.fresh_token(connection.id)
    assert isinstance(caught.value, AuthorizationDead if dead else RequestRejected)
    # The raised error (the 409 or 502 body) repeats neither what the refresh sent...
    assert SECRET not in str(caught.value) and REFRESH not in str(caught.value)

    # ...and what is stored and shown repeats no secret at all.
    stored = await runtime.vault.connections.get(connection.id)
    assert stored is not None and stored.last_error
    assert stored.status == ("needs_reauth" if dead else "active")
    events = await runtime.vault.events.recent(connection.id)
    failures = [e for e in events if e.kind in ("refresh_failed", "needs_reauth")]
    assert failures
    for text in [stored.last_error, *(json.dumps(e.detail) for e in failures)]:
        for secret in SENT:
            assert secret not in text
    # The platform's words are still there, with the secrets marked.
    assert "and bare: [redacted] [redacted] [redacted]" in stored.last_error
