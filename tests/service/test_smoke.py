"""The service starts in sandbox mode on each database and connects a store end to end."""

from __future__ import annotations

import httpx2

from shopkeys.sandbox.browser import press
from tests.conftest import LiveService


async def test_connect_and_fetch_token(live_service: LiveService, http: httpx2.AsyncClient) -> None:
    created = await http.post(
        f"{live_service.url}/v1/connect-sessions",
        json={"provider": "shopline", "end_user_id": "merchant-1"},
        headers=live_service.headers,
    )
    assert created.status_code == 201, created.text
    callback = await press(http, created.json()["url"])
    done = await http.get(callback)
    assert done.status_code == 200, done.text
    connections = await http.get(f"{live_service.url}/v1/connections", headers=live_service.headers)
    [connection] = connections.json()["data"]
    token = await http.get(
        f"{live_service.url}/v1/connections/{connection['id']}/token", headers=live_service.headers
    )
    assert token.status_code == 200, token.text
    assert token.json()["provider"] == "shopline"
