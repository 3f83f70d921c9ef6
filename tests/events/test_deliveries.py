"""The outbox's repository on SQLite and PostgreSQL: claims, leases, order, outcomes, requeues."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from shopkeys.store.deliveries import DELIVERED, FAILED, PENDING, DeliveryCounts
from shopkeys.store.vault import Vault
from tests.events.conftest import connect, reconnect
from tests.store.conftest import START, FakeClock

LEASE = timedelta(seconds=60)


async def claim(vault: Vault, clock: FakeClock, owner: str = "a", limit: int = 10) -> list[str]:
    claimed = await vault.deliveries.claim_due(owner, clock(), clock() + LEASE, limit)
    return [d.id for d in claimed]


async def test_an_event_for_the_app_is_queued_with_its_change(vault: Vault) -> None:
    connection = await connect(vault)
    [delivery] = await vault.deliveries.recent()
    assert delivery.id.startswith("msg_")
    assert delivery.type == "connection.created"
    assert delivery.connection_id == connection.id
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (PENDING, 0, START)
    assert delivery.payload["type"] == "connection.created"
    assert delivery.payload["data"]["connection_id"] == connection.id
    assert await vault.deliveries.get(delivery.id) == delivery
    assert await vault.deliveries.get("msg_nope") is None


async def test_only_the_oldest_pending_event_of_a_connection_is_claimed(
    vault: Vault, clock: FakeClock
) -> None:
    one = await connect(vault, "acct-1")
    await reconnect(vault, "acct-1")
    two = await connect(vault, "acct-2")
    by_event = sorted(await vault.deliveries.recent(), key=lambda d: d.event_id)
    first, second = (d.id for d in by_event if d.connection_id == one.id)
    [other] = (d.id for d in by_event if d.connection_id == two.id)
    # One per connection: acct-1's first event and acct-2's; acct-1's second waits.
    assert sorted(await claim(vault, clock)) == sorted([first, other])
    await vault.deliveries.delivered(other, "a", 200)
    # While the first is pending (here: waiting for its retry), the second is never claimed.
    await vault.deliveries.retry(first, "a", clock() + timedelta(hours=1), 500, "HTTP 500")
    clock.advance(120)
    assert await claim(vault, clock, owner="b") == []
    clock.advance(3600)
    assert await claim(vault, clock, owner="b") == [first]
    assert second not in await claim(vault, clock, owner="c")


async def test_a_later_event_goes_once_the_earlier_is_delivered_or_given_up(
    vault: Vault, clock: FakeClock
) -> None:
    for _ in range(3):
        await reconnect(vault)
    ordered = sorted(await vault.deliveries.recent(), key=lambda d: d.event_id)
    first, second, third = (d.id for d in ordered)
    assert await claim(vault, clock) == [first]
    assert await vault.deliveries.delivered(first, "a", 200)
    assert await claim(vault, clock) == [second]
    assert await vault.deliveries.give_up(second, "a", 404, "HTTP 404")
    # A given-up event does not hold the others back.
    assert await claim(vault, clock) == [third]
    delivered, failed = await vault.deliveries.get(first), await vault.deliveries.get(second)
    assert delivered is not None and failed is not None
    assert (delivered.status, delivered.attempts, delivered.delivered_at) == (DELIVERED, 1, START)
    assert (delivered.last_status, delivered.last_error) == (200, None)
    assert (failed.status, failed.attempts, failed.last_status) == (FAILED, 1, 404)


async def test_a_claimed_delivery_is_leased_until_the_lease_runs_out(
    vault: Vault, clock: FakeClock
) -> None:
    await connect(vault)
    [held] = await claim(vault, clock, owner="a")
    assert await claim(vault, clock, owner="b") == []
    # Only the holder records an outcome.
    assert not await vault.deliveries.delivered(held, "b", 200)
    clock.advance(LEASE.total_seconds())
    # The holder died: its lease lapsed, and another sender takes the delivery over.
    assert await claim(vault, clock, owner="b") == [held]
    assert not await vault.deliveries.retry(held, "a", clock(), None, "timed out")
    assert await vault.deliveries.delivered(held, "b", 204)


async def test_a_retry_waits_until_its_time(vault: Vault, clock: FakeClock) -> None:
    await connect(vault)
    [held] = await claim(vault, clock)
    at = clock() + timedelta(seconds=30)
    assert await vault.deliveries.retry(held, "a", at, None, "could not connect")
    retried = await vault.deliveries.get(held)
    assert retried is not None
    assert (retried.status, retried.attempts, retried.next_attempt_at) == (PENDING, 1, at)
    assert (retried.last_status, retried.last_error) == (None, "could not connect")
    clock.advance(29)
    assert await claim(vault, clock) == []
    clock.advance(1)
    assert await claim(vault, clock) == [held]


async def test_redeliver_requeues_now_and_keeps_the_attempts(
    vault: Vault, clock: FakeClock
) -> None:
    await connect(vault)
    [held] = await claim(vault, clock)
    await vault.deliveries.delivered(held, "a", 200)
    clock.advance(3600)
    redelivered = await vault.deliveries.redeliver(held)
    assert redelivered is not None
    assert (redelivered.status, redelivered.attempts) == (PENDING, 1)
    assert redelivered.next_attempt_at == clock()
    assert await vault.deliveries.redeliver("msg_nope") is None
    assert await claim(vault, clock) == [held]


async def test_a_redelivered_event_waits_for_the_attempt_in_flight(
    vault: Vault, clock: FakeClock
) -> None:
    await connect(vault)
    await reconnect(vault)
    first, second = sorted(await vault.deliveries.recent(), key=lambda d: d.event_id)
    assert await claim(vault, clock) == [first.id]
    await vault.deliveries.delivered(first.id, "a", 200)
    assert await claim(vault, clock) == [second.id]
    # Requeued while the later event is being sent: older, but it waits for that attempt.
    await vault.deliveries.redeliver(first.id)
    assert await claim(vault, clock, owner="b") == []
    await vault.deliveries.delivered(second.id, "a", 200)
    assert await claim(vault, clock, owner="b") == [first.id]


async def test_redeliver_failed_requeues_every_given_up_one(vault: Vault, clock: FakeClock) -> None:
    for account_id in ("acct-1", "acct-2", "acct-3"):
        await connect(vault, account_id)
    held = await claim(vault, clock)
    for delivery_id in held[:2]:
        await vault.deliveries.give_up(delivery_id, "a", 500, "HTTP 500")
    assert await vault.deliveries.counts() == DeliveryCounts(pending=1, failed=2)
    assert await vault.deliveries.redeliver_failed() == 2
    assert await vault.deliveries.counts() == DeliveryCounts(pending=3, failed=0)
    assert sorted(await claim(vault, clock, owner="b")) == sorted(held[:2])


async def test_recent_lists_newest_first_and_filters(vault: Vault, clock: FakeClock) -> None:
    one = await connect(vault, "acct-1")
    await connect(vault, "acct-2")
    await reconnect(vault, "acct-1")
    everything = await vault.deliveries.recent()
    assert [d.event_id for d in everything] == sorted(
        (d.event_id for d in everything), reverse=True
    )
    assert len(await vault.deliveries.recent(limit=2)) == 2
    mine = await vault.deliveries.recent(connection_id=one.id)
    assert len(mine) == 2 and {d.connection_id for d in mine} == {one.id}
    [held, *_] = await claim(vault, clock)
    await vault.deliveries.delivered(held, "a", 200)
    assert [d.id for d in await vault.deliveries.recent(status=DELIVERED)] == [held]
    assert len(await vault.deliveries.recent(status=PENDING)) == 2


async def test_events_outside_the_app_types_are_not_queued(vault: Vault) -> None:
    connection = await connect(vault)
    await vault.connections.set_end_user(connection.id, "u2", force=True)
    assert [d.type for d in await vault.deliveries.recent()] == ["connection.created"]


async def test_concurrent_senders_claim_disjoint_sets(vault: Vault, clock: FakeClock) -> None:
    for n in range(12):
        await connect(vault, f"acct-{n}")
    claims = await asyncio.gather(*(claim(vault, clock, owner=f"s{n}", limit=5) for n in range(4)))
    every = [delivery_id for claimed in claims for delivery_id in claimed]
    assert len(every) == len(set(every)) == 12


async def test_concurrent_senders_never_take_two_events_of_one_connection(
    vault: Vault, clock: FakeClock
) -> None:
    for _ in range(4):
        await reconnect(vault)
    claims = await asyncio.gather(*(claim(vault, clock, owner=f"s{n}") for n in range(4)))
    oldest = min(await vault.deliveries.recent(), key=lambda d: d.event_id)
    assert sorted(claims, key=len) == [[], [], [], [oldest.id]]
