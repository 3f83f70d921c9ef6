"""The refresh's write-back as the token service makes it: one compare-and-set on the version
read under the lease, falling back to judging the refresh token when the row moved."""

from __future__ import annotations

import pytest

from shopkeys.store.records import ACTIVE
from shopkeys.store.repository import VersionConflict
from shopkeys.store.vault import Vault
from tests.store.conftest import FakeClock, account, grant

USED = grant().refresh_token or ""


async def test_a_write_over_the_version_read_stores_everything_at_once(
    vault: Vault, clock: FakeClock
) -> None:
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id="u")
    assert await vault.leases.acquire(connection.id, "me", clock.now.replace(year=2031))
    read = await vault.connections.get(connection.id)
    assert read is not None and read.lease_owner == "me"
    clock.advance(3000)
    new = grant(access="access-2-" + "n" * 24, refresh="refresh-2-" + "m" * 24)

    saved = await vault.connections.save_refresh(
        connection.id, new, used=USED, lease_owner="me", read=read
    )

    stored = await vault.connections.tokens(connection.id)
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == (new.access_token, new.refresh_token)
    assert saved == stored.connection  # what it returns is what a read gives
    assert saved.version == read.version + 1 and saved.status == ACTIVE
    assert saved.last_refreshed_at == clock.now and saved.next_refresh_at is not None
    assert saved.lease_owner is None and saved.metadata == {**read.metadata, **new.raw}
    assert [e.kind for e in await vault.events.recent(connection.id)] == ["refreshed", "connected"]


async def test_a_grant_without_a_refresh_token_keeps_the_stored_one(vault: Vault) -> None:
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id="u")
    new = grant(access="access-2-" + "n" * 24, refresh=None, refresh_ttl=None)
    saved = await vault.connections.save_refresh(connection.id, new, used=USED, read=connection)
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None and stored.refresh_token == USED
    assert saved.refresh_expires_at == connection.refresh_expires_at
    assert saved == stored.connection


async def test_a_reconnect_since_the_read_wins(vault: Vault) -> None:
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id="u")
    reconnected = grant(access="access-9-" + "r" * 24, refresh="refresh-9-" + "r" * 24)
    await vault.connections.upsert(reconnected, account(), end_user_id="u")
    late = grant(access="access-2-" + "n" * 24, refresh="refresh-2-" + "m" * 24)
    with pytest.raises(VersionConflict):
        await vault.connections.save_refresh(connection.id, late, used=USED, read=connection)
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None and stored.refresh_token == reconnected.refresh_token


async def test_a_connection_marked_dead_since_the_read_gets_its_new_grant(vault: Vault) -> None:
    """A stale decision marked it `needs_reauth` while the refresh was in flight (its version
    moved), but the refresh token is still the one presented: the new grant is stored and the
    connection is active again."""
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id="u")
    await vault.connections.record_refresh_failure(connection.id, "stale", dead=True)
    new = grant(access="access-2-" + "n" * 24, refresh="refresh-2-" + "m" * 24)
    saved = await vault.connections.save_refresh(connection.id, new, used=USED, read=connection)
    assert saved.status == ACTIVE and saved.version == connection.version + 2
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None and stored.refresh_token == new.refresh_token
