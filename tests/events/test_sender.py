"""The sender against a scripted receiver: outcomes, backoff, Retry-After, give-up, order, and
no secret anywhere it writes."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx2
import pytest
from pydantic import SecretStr

from shopkeys.config import Settings
from shopkeys.errors import ConfigurationError
from shopkeys.events.retry import Backoff, retry_after
from shopkeys.events.sender import build_sender, webhook_secret_of
from shopkeys.store.deliveries import DELIVERED, FAILED, PENDING
from shopkeys.store.vault import Vault
from tests.events.conftest import (
    SECRET_VALUE,
    WEBHOOK_URL,
    FakeSleep,
    Receiver,
    connect,
    drain,
    reconnect,
    sender,
)
from tests.store.conftest import START, FakeClock, grant

# --- pure: backoff and Retry-After ---------------------------------------------------------------


def test_backoff_doubles_from_5_seconds_to_an_hour() -> None:
    backoff = Backoff()
    delays = [backoff.delay(n, lambda: 1.0) for n in range(1, 14)]
    assert delays[:5] == [5, 10, 20, 40, 80]
    assert delays[-3:] == [3600, 3600, 3600]
    assert backoff.delay(10_000, lambda: 1.0) == 3600  # no overflow however long it fails


def test_backoff_has_full_jitter_above_a_floor() -> None:
    backoff = Backoff()
    assert backoff.delay(4, lambda: 0.5) == 20
    assert backoff.delay(4, lambda: 0.0) == 1.0


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("120", START) == 120
    assert retry_after(" 1.5 ", START) == 1.5
    assert retry_after(format_datetime(START + timedelta(minutes=2), usegmt=True), START) == 120
    assert retry_after(format_datetime(START - timedelta(minutes=2), usegmt=True), START) == 0
    for useless in (None, "", "soon", "-5", "1e3", "9" * 400):
        assert retry_after(useless, START) is None


# --- one attempt ---------------------------------------------------------------------------------


async def test_a_2xx_answer_delivers_the_event(vault: Vault, clock: FakeClock) -> None:
    connection = await connect(vault)
    receiver = Receiver(then=lambda: httpx2.Response(200, text="ok"))
    async with receiver.client() as http:
        assert await sender(vault, http, clock).run_once() == 1
        assert await sender(vault, http, clock).run_once() == 0
    [received] = receiver.requests
    [delivery] = await vault.deliveries.recent()
    assert received.id == delivery.id
    assert received.headers["webhook-timestamp"] == str(int(START.timestamp()))
    assert received.headers["webhook-signature"].startswith("v1,")
    assert received.headers["content-type"] == "application/json"
    assert received.payload == delivery.payload
    assert received.payload["data"]["connection_id"] == connection.id
    assert b" " not in received.body  # compact JSON
    assert (delivery.status, delivery.attempts, delivery.last_status) == (DELIVERED, 1, 200)
    assert delivery.delivered_at == START


@pytest.mark.parametrize(
    ("answer", "status", "error"),
    [
        (httpx2.ConnectError("[Errno 111] Connection refused"), None, "could not connect"),
        (httpx2.ReadTimeout("timed out"), None, "timed out"),
        (httpx2.RemoteProtocolError("peer closed"), None, "request failed (RemoteProtocolError)"),
        (
            httpx2.Response(500, text="Internal\n  Server Error"),
            500,
            "HTTP 500: Internal Server Error",
        ),
        (httpx2.Response(404), 404, "HTTP 404"),
        (httpx2.Response(400, json={"error": "bad"}), 400, 'HTTP 400: {"error":"bad"}'),
        (httpx2.Response(410), 410, "HTTP 410"),
        (httpx2.Response(302, headers={"location": "http://elsewhere.test/"}), 302, "HTTP 302"),
        (httpx2.Response(429), 429, "HTTP 429"),
    ],
)
async def test_any_other_outcome_is_retried_with_backoff(
    vault: Vault,
    clock: FakeClock,
    answer: httpx2.Response | Exception,
    status: int | None,
    error: str,
) -> None:
    await connect(vault)
    receiver = Receiver(script=[answer])
    async with receiver.client() as http:
        assert await sender(vault, http, clock).run_once() == 1
    [delivery] = await vault.deliveries.recent()
    assert (delivery.status, delivery.attempts) == (PENDING, 1)
    assert (delivery.last_status, delivery.last_error) == (status, error)
    assert delivery.next_attempt_at == START + timedelta(seconds=5)
    assert len(receiver.requests) == 1  # a redirect is not followed


async def test_waits_grow_until_the_receiver_answers(vault: Vault, clock: FakeClock) -> None:
    await connect(vault)
    receiver = Receiver(script=[httpx2.Response(503)] * 6)
    async with receiver.client() as http:
        await drain(sender(vault, http, clock), vault, clock)
    times = [
        int(r.headers["webhook-timestamp"]) - int(START.timestamp()) for r in receiver.requests
    ]
    assert times == [0, 5, 15, 35, 75, 155, 315]
    [delivery] = await vault.deliveries.recent()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DELIVERED, 7, None)


@pytest.mark.parametrize(
    ("status", "header", "wait"),
    [
        (429, "120", 120),
        (503, "120", 120),
        (429, "1", 5),  # shorter than the backoff: the backoff
        (500, "120", 5),  # only 429 and 503 are asked to wait
        (429, "86400", 3600 * 24),
        (429, "999999999", 3 * 86400),  # never past the give-up time
    ],
)
async def test_retry_after_is_honoured_when_longer(
    vault: Vault, clock: FakeClock, status: int, header: str, wait: int
) -> None:
    await connect(vault)
    receiver = Receiver(script=[httpx2.Response(status, headers={"retry-after": header})])
    async with receiver.client() as http:
        await sender(vault, http, clock).run_once()
    [delivery] = await vault.deliveries.recent()
    assert delivery.next_attempt_at == START + timedelta(seconds=wait)


async def test_retry_after_as_a_date(vault: Vault, clock: FakeClock) -> None:
    await connect(vault)
    when = format_datetime(START + timedelta(minutes=10), usegmt=True)
    receiver = Receiver(script=[httpx2.Response(429, headers={"retry-after": when})])
    async with receiver.client() as http:
        await sender(vault, http, clock).run_once()
    [delivery] = await vault.deliveries.recent()
    assert delivery.next_attempt_at == START + timedelta(minutes=10)


# --- giving up -----------------------------------------------------------------------------------


async def test_an_event_is_given_up_after_the_configured_time(
    vault: Vault, clock: FakeClock
) -> None:
    connection = await connect(vault)
    await reconnect(vault)
    first, second = sorted(await vault.deliveries.recent(), key=lambda d: d.event_id)
    receiver = Receiver(then=lambda: httpx2.Response(500))
    async with receiver.client() as http:
        send = sender(vault, http, clock, give_up_after=timedelta(hours=2))
        while (await vault.deliveries.get(first.id)).status == PENDING:  # type: ignore[union-attr]
            assert all(r.id == first.id for r in receiver.requests)  # the second waits
            if not await send.run_once():
                clock.now = (await vault.deliveries.get(first.id)).next_attempt_at  # type: ignore[union-attr]
        given_up = await vault.deliveries.get(first.id)
        assert given_up is not None
        assert (given_up.status, given_up.last_status) == (FAILED, 500)
        # The last attempt was at the give-up time, not an hour's backoff past it.
        last = int(receiver.requests[-1].headers["webhook-timestamp"])
        assert last == int((START + timedelta(hours=2)).timestamp())
        assert given_up.attempts == len(receiver.requests)
        # A given-up event no longer holds the connection's later ones back.
        receiver.then = lambda: httpx2.Response(204)
        assert await send.run_once() == 1
    assert receiver.accepted[-1].id == second.id
    assert receiver.accepted[-1].payload["data"]["connection_id"] == connection.id


async def test_an_event_older_than_the_give_up_time_gets_one_attempt(
    vault: Vault, clock: FakeClock
) -> None:
    await connect(vault)
    clock.advance(4 * 86400)  # the sender was not running for four days
    receiver = Receiver(script=[httpx2.Response(502), httpx2.Response(204)])
    async with receiver.client() as http:
        assert await sender(vault, http, clock).run_once() == 1
    [delivery] = await vault.deliveries.recent()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (FAILED, 1, "HTTP 502")


async def test_a_redelivered_event_is_sent_again(vault: Vault, clock: FakeClock) -> None:
    await connect(vault)
    receiver = Receiver(script=[httpx2.Response(500)])
    async with receiver.client() as http:
        send = sender(vault, http, clock, give_up_after=timedelta(seconds=1))
        clock.advance(1)
        await send.run_once()
        [failed] = await vault.deliveries.recent(status=FAILED)
        await vault.deliveries.redeliver(failed.id)
        assert await send.run_once() == 1
    assert [r.id for r in receiver.requests] == [failed.id, failed.id]
    delivered = await vault.deliveries.get(failed.id)
    assert delivered is not None and (delivered.status, delivered.attempts) == (DELIVERED, 2)


# --- down, then up: everything once, in order ----------------------------------------------------


async def test_a_receiver_down_then_up_gets_every_event_once_in_order(
    vault: Vault, clock: FakeClock
) -> None:
    for account_id in ("acct-1", "acct-2", "acct-3"):
        await connect(vault, account_id)
    for account_id in ("acct-2", "acct-1", "acct-3", "acct-1"):
        await reconnect(vault, account_id)
    stored = await vault.connections.find()
    await vault.connections.record_refresh_failure(stored[0].id, "HTTP 503", dead=False)
    await vault.connections.delete(stored[1].id)
    deliveries = sorted(await vault.deliveries.recent(limit=100), key=lambda d: d.event_id)
    assert len(deliveries) == 9
    order = {d.id: n for n, d in enumerate(deliveries)}
    connection_of = {d.id: d.connection_id for d in deliveries}
    down = [httpx2.ConnectError("[Errno 111] Connection refused")] * 5
    failing = [
        httpx2.Response(500),
        httpx2.Response(429, headers={"retry-after": "30"}),
        httpx2.Response(404),
        httpx2.ReadTimeout("timed out"),
        httpx2.Response(503, headers={"retry-after": "2"}),
    ]
    # Every fifth answer after the outage still fails, so retries mix with first attempts.
    answers = iter([*down, *failing, *[httpx2.Response(204)] * 3, httpx2.Response(500)] * 20)
    receiver = Receiver(then=lambda: next(answers))
    async with receiver.client() as http:
        send = sender(vault, http, clock, random=random.Random(7).random)
        await drain(send, vault, clock)
    accepted = [r.id for r in receiver.accepted]
    assert sorted(accepted) == sorted(order)  # each exactly once
    for connection_id in set(connection_of.values()):
        mine = [i for i in accepted if connection_of[i] == connection_id]
        assert mine == sorted(mine, key=order.__getitem__)
        # No request, failed or not, ever went out for an event before its predecessor landed.
        attempted = [r.id for r in receiver.requests if connection_of[r.id] == connection_id]
        assert attempted == sorted(attempted, key=order.__getitem__)
    assert all(d.status == DELIVERED for d in await vault.deliveries.recent(limit=100))


async def test_one_round_sends_each_connection_s_event_at_once(
    vault: Vault, clock: FakeClock
) -> None:
    for n in range(5):
        await connect(vault, f"acct-{n}")
    in_flight = 0
    most = 0

    async def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx2.Response(204)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        assert await sender(vault, http, clock, concurrency=3).run_once() == 3
        assert most == 3
        assert await sender(vault, http, clock, concurrency=3).run_once() == 2


# --- secrets -------------------------------------------------------------------------------------


async def test_no_secret_or_token_is_stored_logged_or_sent(
    vault: Vault, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="shopkeys")
    tokens = (grant().access_token, grant().refresh_token)
    url_credential = "hooktoken" + "q" * 24
    connection = await connect(vault)
    await vault.connections.record_refresh_failure(connection.id, "HTTP 503", dead=False)
    key_part = SECRET_VALUE.removeprefix("whsec_")
    echo = (
        f"bad signature; expected secret {SECRET_VALUE} (key {key_part}), "
        f"got Authorization: Bearer {tokens[0]} access_token={tokens[0]} " + "x" * 5000
    )
    receiver = Receiver(
        script=[
            httpx2.Response(500, text=echo),
            httpx2.Response(401, text=f"secret {key_part}"),
            httpx2.ConnectError(f"cannot reach http://app.test/?key={url_credential}"),
        ]
    )
    async with receiver.client() as http:
        send = sender(vault, http, clock, url=f"{WEBHOOK_URL}?key={url_credential}")
        errors = []
        for _ in range(3):
            await send.run_once()
            [delivery, *_] = sorted(await vault.deliveries.recent(), key=lambda d: d.event_id)
            errors.append(delivery.last_error or "")
            clock.now = delivery.next_attempt_at
    assert errors[0].startswith("HTTP 500: bad signature; expected secret [redacted]")
    assert len(errors[0]) <= 210
    assert errors[1] == "HTTP 401: secret [redacted]"
    assert errors[2] == "could not connect"
    stored = [
        repr(d.payload) + (d.last_error or "") for d in await vault.deliveries.recent(limit=100)
    ]
    sent = [r.body.decode() for r in receiver.requests]
    # shopkeys' own lines. (httpx2's INFO line per request names the URL; the service keeps
    # libraries at WARNING and redacts what passes.)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("shopkeys")]
    for text in [*errors, *stored, *sent, *logged]:
        for secret in (SECRET_VALUE, key_part, *tokens, url_credential):
            assert secret not in text
    assert any("HTTP 500" in line for line in logged)


# --- the loop and the wiring ---------------------------------------------------------------------


async def test_run_forever_delivers_then_stops_when_told(
    vault: Vault, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    await connect(vault)
    stop = asyncio.Event()
    rounds = 0
    sleep = FakeSleep()
    receiver = Receiver()
    async with receiver.client() as http:
        send = sender(vault, http, clock, sleep=sleep)
        original = send.deliveries.claim_due

        async def flaky_claim(*args: object, **kwargs: object) -> object:
            nonlocal rounds
            rounds += 1
            if rounds == 1:
                raise OSError("database away")
            if rounds == 4:
                stop.set()
            return await original(*args, **kwargs)  # type: ignore[arg-type]

        send.deliveries.claim_due = flaky_claim  # type: ignore[method-assign]
        await asyncio.wait_for(send.run_forever(2.5, stop), timeout=5)
    assert len(receiver.accepted) == 1
    # A failed round and an empty one paused; the one that delivered looked again at once.
    assert sleep.waits == [2.5, 2.5]
    assert "event delivery round failed (OSError)" in caplog.text


async def test_run_forever_returns_at_once_when_stopped_while_waiting(
    vault: Vault, clock: FakeClock
) -> None:
    stop = asyncio.Event()

    async def long_sleep(seconds: float) -> None:
        stop.set()
        await asyncio.Event().wait()  # would never end

    async with Receiver().client() as http:
        send = sender(vault, http, clock)
        send.sleep = long_sleep
        await asyncio.wait_for(send.run_forever(3600, stop), timeout=5)


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[arg-type]


async def test_build_sender_needs_a_webhook_url(vault: Vault, tmp_path: Path) -> None:
    async with Receiver().client() as http:
        settings = _settings(tmp_path)
        secret = webhook_secret_of(settings)
        assert secret is None
        assert build_sender(settings, secret, vault, http, owner="o") is None
    assert not (tmp_path / "data").exists()


async def test_build_sender_generates_the_secret_once(
    vault: Vault, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, webhook_url=WEBHOOK_URL, webhook_give_up_after=60.0)
    async with Receiver().client() as http:
        send = build_sender(settings, webhook_secret_of(settings), vault, http, owner="o")
        again = build_sender(settings, webhook_secret_of(settings), vault, http, owner="o")
    assert send is not None and again is not None
    assert send.secret.created and not again.secret.created
    assert send.secret.value == again.secret.value
    assert (send.url, send.owner, send.give_up_after) == (WEBHOOK_URL, "o", timedelta(seconds=60))
    assert "created the webhook signing secret file" in caplog.text
    assert send.secret.value not in caplog.text


async def test_build_sender_uses_and_checks_the_configured_secret(
    vault: Vault, tmp_path: Path
) -> None:
    async with Receiver().client() as http:
        configured = _settings(
            tmp_path, webhook_url=WEBHOOK_URL, webhook_secret=SecretStr(SECRET_VALUE)
        )
        send = build_sender(configured, webhook_secret_of(configured), vault, http, owner="o")
        assert send is not None and send.secret.value == SECRET_VALUE
        bad = _settings(tmp_path, webhook_url=WEBHOOK_URL, webhook_secret=SecretStr("whsec_x"))
        with pytest.raises(ConfigurationError, match="SHOPKEYS_WEBHOOK_SECRET"):
            webhook_secret_of(bad)
