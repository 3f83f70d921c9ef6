"""Every event type, caused by the real operations (connect, refresh, failure, dead grant, the
scheduler's warning, revocation, deletion), reaches a real receiver on a loopback port, signed
as the `standardwebhooks` package computes it, in order per connection, without a token."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import httpx2
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shopkeys.errors import AuthorizationDead, TemporaryFailure
from shopkeys.providers.inbound import InboundWebhook
from shopkeys.refresh import TokenService
from shopkeys.refresh.scheduler import Scheduler
from shopkeys.store.recording import APP_EVENT_TYPES
from shopkeys.store.vault import Vault
from tests.events.conftest import SECRET_VALUE, drain, sender
from tests.live import reserve_socket, serve, url_of
from tests.refresh.conftest import FakeProvider, refreshed
from tests.store.conftest import FakeClock, account, grant


async def test_every_event_type_arrives_signed_in_order_without_tokens(
    vault: Vault, clock: FakeClock
) -> None:
    new = refreshed(
        grant(),
        clock.now,
        access="access-2-" + "n" * 24,
        refresh="refresh-2-" + "m" * 24,
        life=timedelta(hours=3),
    )
    not_sent = TemporaryFailure(
        "connection failed", provider="shopline", endpoint="refresh", request_sent=False
    )
    dead = AuthorizationDead("invalid_grant", provider="shopline", endpoint="refresh")
    platform = FakeProvider(new, not_sent, dead)
    tokens = TokenService(
        vault,
        {"shopline": platform},  # type: ignore[dict-item]
        None,  # type: ignore[arg-type]
        clock=clock,
    )
    secrets = {grant().access_token, grant().refresh_token, new.access_token, new.refresh_token}

    first, _ = await vault.connections.upsert(grant(), account(), end_user_id="u1")
    await tokens.refresh(first.id)  # connection.refreshed
    clock.advance(10)  # past the 5-second hold of nothing
    await tokens.refresh(first.id)  # connection.refresh_failed (the old token still served)
    clock.advance(10)
    with contextlib.suppress(AuthorizationDead):
        await tokens.refresh(first.id)  # connection.needs_reauth
    # A grant whose refresh token ends in three days, on a platform that does not extend it.
    ending = grant(account_id="acct-2", refresh_ttl=3 * 86400)
    second, _ = await vault.connections.upsert(ending, account("acct-2"), end_user_id="u2")
    report = await Scheduler(tokens, vault, clock=clock).sweep()  # connection.reauth_due
    assert report.reauth_due == 1
    platform_says = InboundWebhook(
        provider="shopline",
        event_id="trace-1",
        event_type="products/update",
        account_id="acct-2",
        shop_id=None,
        payload={"topic": "products/update"},
    )
    assert not (await vault.inbox.receive(platform_says)).duplicate  # webhook.received
    await vault.connections.mark_revoked(second.id, "the app was uninstalled")
    await vault.connections.delete(first.id)  # connection.deleted

    webhook = Webhook(SECRET_VALUE)
    arrived: list[tuple[str, dict[str, object]]] = []
    problems: list[str] = []

    async def hook(request: Request) -> Response:
        body = (await request.body()).decode()
        headers = dict(request.headers)
        # The reference library's signature at the attempt's own (fake) time: its `verify`
        # compares the timestamp with the real clock.
        sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
        if headers["webhook-signature"] != webhook.sign(headers["webhook-id"], sent_at, body):
            problems.append(f"bad signature on {headers['webhook-id']}")
        if any(secret and secret in body for secret in secrets):
            problems.append(f"a token in {headers['webhook-id']}")
        payload = json.loads(body)
        arrived.append((payload["type"], payload["data"]))
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    sock = reserve_socket()
    async with httpx2.AsyncClient(timeout=10) as http:
        send = sender(vault, http, clock, url=url_of(sock) + "/hook")
        with serve(app, sock):
            await drain(send, vault, clock)

    assert problems == []
    assert {kind for kind, _ in arrived} == set(APP_EVENT_TYPES.values())
    per_connection: dict[object, list[str]] = {}
    for kind, data in arrived:
        per_connection.setdefault(data["connection_id"], []).append(kind)
    assert per_connection[first.id] == [
        "connection.created",
        "connection.refreshed",
        "connection.refresh_failed",
        "connection.needs_reauth",
        "connection.deleted",
    ]
    assert per_connection[second.id] == [
        "connection.created",
        "connection.reauth_due",
        "webhook.received",
        "connection.revoked",
    ]
    received = next(data for kind, data in arrived if kind == "webhook.received")
    assert received["payload"] == {"topic": "products/update"}
    assert received["event_type"] == "products/update" and received["event_id"] == "trace-1"
    due = next(data for kind, data in arrived if kind == "connection.reauth_due")
    assert due["deadline"] == (ending.refresh_expires_at or clock.now).isoformat()
