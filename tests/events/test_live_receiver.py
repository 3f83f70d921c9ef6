"""A real receiver on a loopback port: refused while it is down, then failing in every way the
sender must survive, then up. Every event arrives once, in order per connection, verifiably."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import httpx2
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from shopkeys.store.deliveries import DELIVERED
from shopkeys.store.vault import Vault
from tests.events.conftest import SECRET_VALUE, connect, drain, reconnect, sender
from tests.live import reserve_socket, serve, url_of
from tests.store.conftest import FakeClock

#: What the app answers, request by request, once it is up; then 204 to everything.
ANSWERS = [
    PlainTextResponse("Internal Server Error", status_code=500),
    PlainTextResponse("slow down", status_code=429, headers={"retry-after": "30"}),
    PlainTextResponse("no such route", status_code=404),
    PlainTextResponse("", status_code=503, headers={"retry-after": "1"}),
]


async def test_a_receiver_that_is_down_then_up_gets_every_event_once(
    vault: Vault, clock: FakeClock
) -> None:
    for account_id in ("acct-1", "acct-2"):
        await connect(vault, account_id)
    for account_id in ("acct-1", "acct-2", "acct-1"):
        await reconnect(vault, account_id)
    deliveries = sorted(await vault.deliveries.recent(), key=lambda d: d.event_id)
    order = {d.id: n for n, d in enumerate(deliveries)}
    connection_of = {d.id: d.connection_id for d in deliveries}

    webhook = Webhook(SECRET_VALUE)
    script = list(ANSWERS)
    received: list[tuple[str, int]] = []
    accepted: list[str] = []
    unverified: list[str] = []

    async def hook(request: Request) -> Response:
        body = (await request.body()).decode()
        headers = request.headers
        # The signature checked as the reference library does, at the attempt's own time
        # (its `verify` compares the timestamp with the real clock, and this one is fake).
        sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
        expected = webhook.sign(headers["webhook-id"], sent_at, body)
        if (
            headers["webhook-signature"] != expected
            or headers["content-type"] != "application/json"
        ):
            unverified.append(headers["webhook-id"])
        answer = script.pop(0) if script else Response(status_code=204)
        received.append((headers["webhook-id"], answer.status_code))
        if answer.status_code == 204:
            accepted.append(headers["webhook-id"])
        return answer

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    sock = reserve_socket()  # bound, not listening yet: connections are refused
    url = url_of(sock) + "/hook"
    async with httpx2.AsyncClient(timeout=10) as http:
        send = sender(vault, http, clock, url=url, random=random.Random(3).random)
        # Down: each connection's first event is tried, refused, and scheduled again.
        assert await send.run_once() == 2
        assert await send.run_once() == 0
        refused = await vault.deliveries.recent(status="pending")
        assert {d.last_error for d in refused if d.attempts} == {"could not connect"}
        with serve(app, sock):
            await drain(send, vault, clock)

    assert unverified == []
    assert sorted(accepted) == sorted(order)  # every event exactly once
    assert [status for _, status in received[: len(ANSWERS)]] == [500, 429, 404, 503]
    for connection_id in set(connection_of.values()):
        mine = [i for i, _ in received if connection_of[i] == connection_id]
        assert mine == sorted(mine, key=order.__getitem__)
    stored = await vault.deliveries.recent()
    assert {d.status for d in stored} == {DELIVERED}
    assert all(d.last_status == 204 for d in stored)
