"""One refresh per connection across instances: two token services (two lease owners) on one
vault stand for two processes. A real vault on each database, a fake platform, a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from shopkeys.errors import AuthorizationDead, RateLimited, TemporaryFailure
from shopkeys.grant import Grant
from shopkeys.refresh import ConnectionUnusable, TokenService
from shopkeys.refresh.scheduler import Scheduler
from shopkeys.store.records import ACTIVE
from shopkeys.store.tables import ConnectionRow
from shopkeys.store.vault import Vault
from tests.refresh.conftest import FakeProvider, refreshed
from tests.refresh.test_service import NEARLY_EXPIRED, connect, kinds
from tests.store.conftest import FakeClock, grant


def later_grant(clock: FakeClock, n: int = 2) -> Grant:
    """A refresh's answer whose tokens outlive every clock move in these tests (3 hours)."""
    return refreshed(
        grant(),
        clock.now,
        access=f"access-{n}-" + "n" * 24,
        refresh=f"refresh-{n}-" + "m" * 24,
        life=timedelta(hours=3),
    )


def instance(vault: Vault, clock: FakeClock, owner: str, platform: FakeProvider) -> TokenService:
    return TokenService(
        vault,
        {"shopline": platform},  # type: ignore[dict-item]
        None,  # type: ignore[arg-type]
        clock=clock,
        owner=owner,
    )


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Yield to the event loop until `condition()` holds (a real wait of milliseconds)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def lease_of(vault: Vault, connection_id: str) -> str | None:
    async with vault.engine.connect() as connection:
        owner: str | None = await connection.scalar(
            select(ConnectionRow.lease_owner).where(ConnectionRow.id == connection_id)
        )
        return owner


async def test_a_second_instance_waits_for_the_first_and_gets_its_token(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider(later_grant(clock))
    platform.hold.clear()
    first = instance(vault, clock, "first", platform)
    second = instance(vault, clock, "second", platform)
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)

    one = asyncio.create_task(first.fresh_token(connection_id))
    await until(lambda: len(platform.calls) == 1)
    assert await lease_of(vault, connection_id) == "first"
    others = [asyncio.create_task(second.fresh_token(connection_id)) for _ in range(20)]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in others)  # waiting, not calling the platform
    platform.hold.set()
    tokens = await asyncio.gather(one, *others)

    assert len(platform.calls) == 1
    assert {token.access_token for token in tokens} == {later_grant(clock).access_token}
    assert await lease_of(vault, connection_id) is None
    assert await kinds(vault, connection_id) == ["connected", "refreshed"]


async def test_a_failure_is_shared_with_the_waiters_and_its_retry_after_with_everyone(
    vault: Vault, clock: FakeClock
) -> None:
    limited = RateLimited(
        "too many requests", provider="shopline", endpoint="refresh", retry_after=30
    )
    platform = FakeProvider(limited, later_grant(clock))
    platform.hold.clear()
    first = instance(vault, clock, "first", platform)
    second = instance(vault, clock, "second", platform)
    connection_id = await connect(vault)
    clock.advance(3600)  # expired: nothing left to serve

    one = asyncio.create_task(first.fresh_token(connection_id))
    await until(lambda: len(platform.calls) == 1)
    waiters = [asyncio.create_task(second.fresh_token(connection_id)) for _ in range(8)]
    await asyncio.sleep(0.05)
    platform.hold.set()
    results = await asyncio.gather(one, *waiters, return_exceptions=True)

    assert len(platform.calls) == 1
    assert all(isinstance(result, RateLimited) for result in results)
    shared = results[-1]
    assert isinstance(shared, RateLimited) and shared.retry_after is not None
    assert 0 < shared.retry_after <= 30
    # Until the platform's wait has passed, neither instance asks again.
    with pytest.raises(RateLimited):
        await first.fresh_token(connection_id)
    with pytest.raises(RateLimited):
        await second.fresh_token(connection_id)
    assert len(platform.calls) == 1
    clock.advance(31)
    token = await second.fresh_token(connection_id)
    assert token.access_token == later_grant(clock).access_token
    assert len(platform.calls) == 2
    assert await kinds(vault, connection_id) == ["connected", "refresh_failed", "refreshed"]


async def test_invalid_grant_on_a_token_another_refresh_replaced_is_not_a_dead_grant(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider(AuthorizationDead("invalid_grant", provider="shopline", endpoint="r"))
    platform.hold.clear()
    tokens = instance(vault, clock, "late", platform)
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)

    asking = asyncio.create_task(tokens.fresh_token(connection_id))
    await until(lambda: len(platform.calls) == 1)
    # Meanwhile another process (whose lease lapsed, say) stored the rotated pair.
    winner = later_grant(clock, 7)
    await vault.connections.save_refresh(connection_id, winner, used=grant().refresh_token or "")
    platform.hold.set()
    token = await asyncio.wait_for(asking, 5)

    assert token.access_token == winner.access_token
    stored = await vault.connections.get(connection_id)
    assert stored is not None and stored.status == ACTIVE and stored.refresh_failures == 0
    assert "needs_reauth" not in await kinds(vault, connection_id)


@pytest.mark.parametrize("sent", [True, False])
async def test_an_ambiguous_failure_is_retried_once(
    vault: Vault, clock: FakeClock, sent: bool
) -> None:
    lost = TemporaryFailure(
        "the platform did not answer in time",
        provider="shopline",
        endpoint="refresh",
        request_sent=sent,
    )
    platform = FakeProvider(lost, later_grant(clock))
    tokens = instance(vault, clock, "one", platform)
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)

    token = await tokens.fresh_token(connection_id)
    if sent:
        # The request may have reached the platform: tried again at once, with the stored token.
        assert len(platform.calls) == 2 and platform.calls[0] == platform.calls[1]
        assert token.access_token == later_grant(clock).access_token
    else:
        # It never left: a plain temporary failure, the still-valid token served.
        assert len(platform.calls) == 1
        assert token.access_token == grant().access_token


async def test_a_caller_that_goes_away_does_not_cancel_the_refresh(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider(later_grant(clock))
    platform.hold.clear()
    tokens = instance(vault, clock, "one", platform)
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)

    caller = asyncio.create_task(tokens.fresh_token(connection_id))
    await until(lambda: len(platform.calls) == 1)
    caller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    platform.hold.set()
    await tokens.aclose()  # what shutdown does: wait for refreshes in flight

    stored = await vault.connections.tokens(connection_id)
    assert stored is not None and stored.refresh_token == later_grant(clock).refresh_token


async def test_a_failed_write_of_the_new_grant_is_retried(
    vault: Vault, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform = FakeProvider(later_grant(clock))
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    tokens = TokenService(
        vault,
        {"shopline": platform},  # type: ignore[dict-item]
        None,  # type: ignore[arg-type]
        clock=clock,
        sleep=no_sleep,
    )
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)
    real = vault.connections.save_refresh
    failures = iter([OperationalError("UPDATE", {}, Exception("connection lost"))] * 2)

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return await real(*args, **kwargs)

    monkeypatch.setattr(vault.connections, "save_refresh", flaky)
    token = await tokens.fresh_token(connection_id)
    assert token.access_token == later_grant(clock).access_token
    assert len(slept) == 2
    stored = await vault.connections.tokens(connection_id)
    assert stored is not None and stored.refresh_token == later_grant(clock).refresh_token


async def test_a_lapsed_lease_of_a_crashed_instance_is_taken_over(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider(later_grant(clock))
    tokens = instance(vault, clock, "survivor", platform)
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)
    # An instance took the lease and died.
    assert await vault.leases.acquire(connection_id, "crashed", clock.now + timedelta(seconds=60))

    asking = asyncio.create_task(tokens.fresh_token(connection_id))
    await asyncio.sleep(0.1)
    assert not asking.done() and platform.calls == []  # the lease still holds
    clock.advance(61)
    token = await asyncio.wait_for(asking, 5)
    assert token.access_token == later_grant(clock).access_token
    assert len(platform.calls) == 1


async def test_a_revoked_connection_gives_no_token_and_is_not_refreshed(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider()
    tokens = instance(vault, clock, "one", platform)
    connection_id = await connect(vault)
    revoked = await vault.connections.mark_revoked(connection_id, "the app was uninstalled")
    assert revoked is not None and revoked.status == "revoked" and revoked.next_refresh_at is None
    with pytest.raises(ConnectionUnusable):
        await tokens.fresh_token(connection_id)
    assert await kinds(vault, connection_id) == ["connected", "revoked"]
    assert platform.calls == []


async def test_an_unforeseen_error_in_a_sweep_backs_the_connection_off(
    vault: Vault, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = instance(vault, clock, "one", FakeProvider())
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)

    async def broken(connection_id: str, read: object = None) -> Any:
        raise RuntimeError("secret-ish detail that must not be stored")

    monkeypatch.setattr(tokens, "refresh_due", broken)
    report = await Scheduler(tokens, vault, clock=clock).sweep()
    assert report.claimed == 1
    stored = await vault.connections.get(connection_id)
    assert stored is not None and stored.status == ACTIVE and stored.refresh_failures == 1
    assert stored.last_error == "the refresh failed unexpectedly (RuntimeError)"
    assert stored.next_refresh_at is not None and stored.next_refresh_at > clock.now
    # Backed off: the next sweep at the same moment leaves it alone.
    assert (await Scheduler(tokens, vault, clock=clock).sweep()).claimed == 0
    assert await lease_of(vault, connection_id) is None
