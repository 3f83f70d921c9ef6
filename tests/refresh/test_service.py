"""The token service in-process: a real vault, a fake platform and a fake clock.

Expiry comes from moving the clock, never from rewriting rows.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from shopkeys.errors import AuthorizationDead, TemporaryFailure
from shopkeys.grant import Grant
from shopkeys.refresh import (
    ConnectionUnusable,
    FreshToken,
    NotRefreshable,
    TokenService,
)
from shopkeys.refresh.policy import MIN_LIFE
from shopkeys.refresh.token_cache import CACHE_TTL
from shopkeys.store.records import ACTIVE, NEEDS_REAUTH
from shopkeys.store.vault import Vault
from tests.refresh.conftest import FakeProvider, refreshed
from tests.store.conftest import FakeClock, account, grant

HOUR = 3600.0
#: Seconds to move the clock so that a token of an hour has a minute less than `MIN_LIFE` left.
NEARLY_EXPIRED = HOUR - MIN_LIFE.total_seconds() + 60


def dead() -> AuthorizationDead:
    return AuthorizationDead("invalid_grant", provider="shopline", endpoint="refresh")


def temporary() -> TemporaryFailure:
    return TemporaryFailure("502 Bad Gateway", provider="shopline", endpoint="refresh")


def service(vault: Vault, clock: FakeClock, **providers: Any) -> TokenService:
    return TokenService(vault, providers, None, clock=clock)  # type: ignore[arg-type]


async def connect(vault: Vault, stored: Grant | None = None) -> str:
    connection, _ = await vault.connections.upsert(stored or grant(), account(), end_user_id="u")
    return connection.id


def new_grant(clock: FakeClock, n: int = 2, *, rotate: bool = True) -> Grant:
    return refreshed(
        grant(),
        clock.now,
        access=f"access-{n}-" + "n" * 24,
        refresh=f"refresh-{n}-" + "m" * 24 if rotate else None,
        life=timedelta(hours=1),
    )


async def kinds(vault: Vault, connection_id: str) -> list[str]:
    return [e.kind for e in reversed(await vault.events.recent(connection_id))]


async def test_a_fresh_token_is_served_from_the_cache(vault: Vault, clock: FakeClock) -> None:
    platform = FakeProvider()
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)

    first = await tokens.fresh_token(connection_id)
    assert first.access_token == grant().access_token
    assert tokens.cached(connection_id) is first
    clock.advance(CACHE_TTL.total_seconds() / 2)
    assert await tokens.fresh_token(connection_id) is first
    # Past its time to live (with the most jitter) the entry is read from the vault again.
    clock.advance(CACHE_TTL.total_seconds())
    assert tokens.cached(connection_id) is None
    again = await tokens.fresh_token(connection_id)
    assert again == first and again is not first
    # Once the token is within MIN_LIFE of its expiry the cache no longer hands it out.
    clock.advance(NEARLY_EXPIRED - CACHE_TTL.total_seconds() * 1.5)
    assert tokens.cached(connection_id) is None
    assert platform.calls == []


async def test_a_token_within_min_life_is_refreshed_first(vault: Vault, clock: FakeClock) -> None:
    platform = FakeProvider()
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)
    await tokens.fresh_token(connection_id)

    clock.advance(NEARLY_EXPIRED)
    platform.answers.append(new_grant(clock))
    token = await tokens.fresh_token(connection_id)
    assert token.access_token == new_grant(clock).access_token
    assert token.expires_at == clock.now + timedelta(hours=1)
    assert platform.calls == [grant().refresh_token]
    assert await kinds(vault, connection_id) == ["connected", "refreshed"]
    assert tokens.cached(connection_id) == token


async def test_concurrent_callers_share_one_refresh(vault: Vault, clock: FakeClock) -> None:
    platform = FakeProvider()
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)
    platform.answers.append(new_grant(clock))
    platform.hold.clear()

    callers = [asyncio.create_task(tokens.fresh_token(connection_id)) for _ in range(10)]
    while not platform.calls:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the other callers reach the lock and wait there
    platform.hold.set()
    answers: list[FreshToken] = await asyncio.gather(*callers)

    assert len(platform.calls) == 1
    assert {a.access_token for a in answers} == {new_grant(clock).access_token}
    assert await kinds(vault, connection_id) == ["connected", "refreshed"]


async def test_a_rotated_refresh_token_is_saved_and_used_next(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider()
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)

    platform.answers.append(new_grant(clock, 2))
    await tokens.refresh(connection_id)
    stored = await vault.connections.tokens(connection_id)
    assert stored is not None and stored.refresh_token == new_grant(clock, 2).refresh_token

    platform.answers.append(new_grant(clock, 3))
    await tokens.refresh(connection_id)
    assert platform.calls == [grant().refresh_token, new_grant(clock, 2).refresh_token]


async def test_a_refresh_token_the_platform_does_not_rotate_is_kept(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider(new_grant(clock, rotate=False))
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)

    await tokens.refresh(connection_id)
    stored = await vault.connections.tokens(connection_id)
    assert stored is not None and stored.refresh_token == grant().refresh_token
    assert stored.connection.refresh_expires_at == grant().refresh_expires_at


async def test_a_dead_grant_needs_reauthorization(vault: Vault, clock: FakeClock) -> None:
    platform = FakeProvider(dead())
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)
    await tokens.fresh_token(connection_id)
    clock.advance(NEARLY_EXPIRED)

    # Dead is dead even with a minute of life left: no token from a revoked grant.
    with pytest.raises(AuthorizationDead):
        await tokens.fresh_token(connection_id)
    stored = await vault.connections.get(connection_id)
    assert stored is not None and stored.status == NEEDS_REAUTH
    assert stored.last_error and "invalid_grant" in stored.last_error
    assert tokens.cached(connection_id) is None
    with pytest.raises(ConnectionUnusable, match="needs_reauth"):
        await tokens.fresh_token(connection_id)
    assert len(platform.calls) == 1


async def test_a_temporary_failure_serves_the_still_valid_token(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider(*[temporary()] * 4)
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)

    token = await tokens.fresh_token(connection_id)
    assert token.access_token == grant().access_token
    # A 502 after the request was sent may hide a rotation: the refresh was tried once more.
    assert len(platform.calls) == 2
    stored = await vault.connections.get(connection_id)
    assert stored is not None and stored.status == ACTIVE and stored.refresh_failures == 1

    # The failure is recorded, so the next ask tries again; once the token has run out, the
    # failure is the answer.
    clock.advance(HOUR - NEARLY_EXPIRED)
    with pytest.raises(TemporaryFailure):
        await tokens.fresh_token(connection_id)
    stored = await vault.connections.get(connection_id)
    assert stored is not None and stored.status == ACTIVE and stored.refresh_failures == 2
    assert await kinds(vault, connection_id) == ["connected", "refresh_failed", "refresh_failed"]


async def test_an_expired_refresh_token_serves_what_is_left_then_needs_reauthorization(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider()
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault, grant(access_ttl=HOUR, refresh_ttl=HOUR / 2))

    clock.advance(NEARLY_EXPIRED)
    assert (await tokens.fresh_token(connection_id)).access_token == grant().access_token
    clock.advance(HOUR - NEARLY_EXPIRED)
    with pytest.raises(ConnectionUnusable, match="the refresh token has expired"):
        await tokens.fresh_token(connection_id)
    stored = await vault.connections.get(connection_id)
    assert stored is not None and stored.status == NEEDS_REAUTH
    assert platform.calls == []


async def test_without_a_refresh_token(vault: Vault, clock: FakeClock) -> None:
    platform = FakeProvider()
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault, grant(refresh=None, refresh_ttl=None))

    with pytest.raises(NotRefreshable, match="has no refresh token"):
        await tokens.refresh(connection_id)
    clock.advance(HOUR)
    with pytest.raises(ConnectionUnusable, match="the grant has no refresh token"):
        await tokens.fresh_token(connection_id)
    stored = await vault.connections.get(connection_id)
    assert stored is not None and stored.status == NEEDS_REAUTH
    assert platform.calls == []


async def test_a_platform_whose_tokens_do_not_expire(vault: Vault, clock: FakeClock) -> None:
    platform = FakeProvider(refreshable=False)
    tokens = service(vault, clock, ecwid=platform)
    ecwid = grant("ecwid", refresh=None, access_ttl=None, refresh_ttl=None)
    connection_id = await connect(vault, ecwid)

    with pytest.raises(NotRefreshable, match="Ecwid access tokens do not expire"):
        await tokens.refresh(connection_id)
    clock.advance(HOUR * 24 * 365)
    assert (await tokens.fresh_token(connection_id)).access_token == ecwid.access_token
    assert platform.calls == []


async def test_an_unconfigured_platform_gives_no_token_to_refresh(
    vault: Vault, clock: FakeClock
) -> None:
    tokens = service(vault, clock)
    connection_id = await connect(vault)
    assert (await tokens.fresh_token(connection_id)).access_token == grant().access_token
    clock.advance(NEARLY_EXPIRED)
    with pytest.raises(ConnectionUnusable, match="shopline is not configured"):
        await tokens.fresh_token(connection_id)


async def test_a_reconnect_during_a_refresh_wins(vault: Vault, clock: FakeClock) -> None:
    platform = FakeProvider()
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)
    clock.advance(NEARLY_EXPIRED)
    platform.answers.append(new_grant(clock, 2))
    platform.hold.clear()

    refreshing = asyncio.create_task(tokens.fresh_token(connection_id))
    while not platform.calls:
        await asyncio.sleep(0.01)
    reconnected = grant(access="access-9-" + "z" * 24, refresh="refresh-9-" + "y" * 24)
    await connect(vault, reconnected)
    platform.hold.set()

    # The refresh's save finds another refresh token in the row and stands back.
    assert (await refreshing).access_token == reconnected.access_token
    stored = await vault.connections.tokens(connection_id)
    assert stored is not None and stored.refresh_token == reconnected.refresh_token


async def test_a_rejected_token_is_refreshed_once_however_late_others_report_it(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider()
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)
    rejected = grant().access_token
    platform.answers.append(new_grant(clock))

    # The token has life left by its expiry, but the platform said it expired.
    first = await tokens.after_expired(connection_id, rejected)
    # A caller that sent the same token before the refresh landed reports it afterwards.
    late = await tokens.after_expired(connection_id, rejected)

    assert first.access_token == late.access_token == new_grant(clock).access_token
    assert len(platform.calls) == 1
    assert await kinds(vault, connection_id) == ["connected", "refreshed"]


async def test_a_refused_authorization_marks_the_connection_unless_its_token_changed(
    vault: Vault, clock: FakeClock
) -> None:
    platform = FakeProvider()
    tokens = service(vault, clock, shopline=platform)
    connection_id = await connect(vault)
    stale = "an-access-token-replaced-since"

    current = await tokens.after_refused(connection_id, stale, dead())
    assert current.access_token == grant().access_token
    with pytest.raises(ConnectionUnusable):
        await tokens.after_refused(connection_id, grant().access_token, dead())
    connection = await vault.connections.get(connection_id)
    assert connection is not None and connection.status == NEEDS_REAUTH
    assert platform.calls == []
