"""The outbox on each database, a scripted receiver, and a sleep that never sleeps."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shopkeys.crypto import KeyRing
from shopkeys.events.secret import WebhookSecret, parse_secret
from shopkeys.events.sender import DeliverySender
from shopkeys.store.records import Connection
from shopkeys.store.vault import Vault
from tests.conftest import TEST_KEYS
from tests.store import conftest as store_fixtures
from tests.store.conftest import FakeClock, account, grant

#: A fixed signing secret for tests: `whsec_` and base64 of 24 bytes.
SECRET_VALUE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET = WebhookSecret(SECRET_VALUE, parse_secret(SECRET_VALUE, "test"), "environment", None)
WEBHOOK_URL = "http://app.test/webhooks/shopkeys"
OWNER = "sender-1"
GIVE_UP_AFTER = timedelta(days=3)

# The store tests' clock and migrated engine, on each database.
clock = store_fixtures.clock
engine = store_fixtures.engine


@pytest.fixture
def vault(engine: AsyncEngine, clock: FakeClock) -> Vault:
    """A vault that queues the app's events in the outbox, as with SHOPKEYS_WEBHOOK_URL set."""
    return Vault(engine, KeyRing.parse(TEST_KEYS), clock=clock, outbox=True)


@dataclass
class FakeSleep:
    """Records the waits asked for and returns at once."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


Answer = httpx2.Response | Exception


@dataclass
class Receiver:
    """The app's webhook endpoint, scripted: each request takes the next answer (an exception
    is raised as the transport's), then `then` for every request after the script."""

    script: list[Answer] = field(default_factory=list)
    then: Callable[[], Answer] = lambda: httpx2.Response(204)
    requests: list[Received] = field(default_factory=list)
    #: The requests answered 2xx, in the order they were answered.
    accepted: list[Received] = field(default_factory=list)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        received = Received(dict(request.headers), request.read())
        self.requests.append(received)
        answer = self.script.pop(0) if self.script else self.then()
        if isinstance(answer, Exception):
            raise answer
        if 200 <= answer.status_code < 300:
            self.accepted.append(received)
        return answer

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))


def sender(
    vault: Vault,
    http: httpx2.AsyncClient,
    clock: FakeClock,
    *,
    sleep: FakeSleep | None = None,
    random: Callable[[], float] = lambda: 1.0,
    owner: str = OWNER,
    url: str = WEBHOOK_URL,
    **options: Any,
) -> DeliverySender:
    """A sender with the test secret, a fake clock and sleep, and no jitter (the full wait)."""
    return DeliverySender(
        vault.deliveries,
        http,
        url,
        SECRET,
        clock=clock,
        owner=owner,
        give_up_after=options.pop("give_up_after", GIVE_UP_AFTER),
        sleep=sleep or FakeSleep(),
        random=random,
        **options,
    )


async def connect(vault: Vault, account_id: str = "acct-1") -> Connection:
    """A new connection (which queues one `connection.created` event)."""
    connection, _ = await vault.connections.upsert(
        grant(account_id=account_id), account(account_id), end_user_id="u1"
    )
    return connection


async def reconnect(vault: Vault, account_id: str = "acct-1") -> Connection:
    """The same store connected again (another `connection.created` event)."""
    return await connect(vault, account_id)


async def drain(send: DeliverySender, vault: Vault, clock: FakeClock, rounds: int = 500) -> int:
    """Run rounds until nothing is pending, moving the clock to the next attempt whenever a
    round finds nothing due; how many rounds it took."""
    for round_ in range(rounds):
        attempted = await send.run_once()
        pending = await vault.deliveries.recent(limit=10_000, status="pending")
        if not pending:
            return round_ + 1
        if not attempted:
            later = [d.next_attempt_at for d in pending if d.next_attempt_at > clock.now]
            assert later, "pending deliveries, none due and none due later"
            clock.now = min(later)
    raise AssertionError(f"still pending after {rounds} rounds")
