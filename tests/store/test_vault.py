"""The vault on SQLite and PostgreSQL: migrations, upserts, refreshes, state, listing, deletion."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from shopkeys.crypto import DecryptionError, KeyRing, fingerprint
from shopkeys.store import database as db
from shopkeys.store.auth_sessions import StateProblem
from shopkeys.store.connections import EndUserConflict
from shopkeys.store.records import NEEDS_REAUTH
from shopkeys.store.repository import VersionConflict
from shopkeys.store.tables import ConnectionRow
from shopkeys.store.vault import Vault
from tests.conftest import TEST_KEYS, _admin
from tests.store.conftest import START, FakeClock, account, grant


@pytest.fixture
def empty_database_url(database_url: str) -> Iterator[str]:
    """A database without even the tables (the shared PostgreSQL one is only truncated)."""
    if make_url(database_url).get_backend_name() == "sqlite":
        yield database_url
        return
    name = f"shopkeys_empty_{secrets.token_hex(4)}"
    asyncio.run(_admin(database_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_migrations_apply_on_an_empty_database(
    empty_database_url: str, tmp_path: Path
) -> None:
    engine = db.create_engine(db.database_url(empty_database_url, tmp_path))
    try:
        assert await db.pending_migrations(engine) == [
            "0001",
            "0002",
            "0003",
            "0004",
            "0005",
            "0006",
        ]
        await db.upgrade(engine)
        assert await db.pending_migrations(engine) == []
        await db.upgrade(engine)  # idempotent
        assert await db.pending_migrations(engine) == []
    finally:
        await engine.dispose()


async def test_upsert_creates_then_updates(vault: Vault, clock: FakeClock) -> None:
    changed: list[str] = []
    vault.on_change(changed.append)
    first, created = await vault.connections.upsert(grant(), account(), end_user_id="u1")
    assert created and first.version == 1 and first.status == "active"
    assert first.id.startswith("con_")
    assert first.account_name == "Acme Store"
    assert first.shops == [{"id": "s1", "name": "Main", "region": "US"}]
    assert first.end_user_id == "u1"
    assert changed == [first.id]

    clock.advance(60)
    second_grant = grant(access="access-2-" + "b" * 24, refresh="refresh-2-" + "c" * 24)
    second, created = await vault.connections.upsert(second_grant, account(), end_user_id=None)
    assert not created
    assert second.id == first.id and second.version == 2
    assert second.end_user_id == "u1"  # a reconnect without an end user keeps the old one
    assert second.updated_at == START + timedelta(seconds=60)
    stored = await vault.connections.tokens(first.id)
    assert stored is not None
    assert stored.access_token == second_grant.access_token
    assert stored.refresh_token == second_grant.refresh_token
    assert await vault.connections.count() == 1
    kinds = [e.kind for e in await vault.events.recent(first.id)]
    assert kinds == ["reconnected", "connected"]
    assert changed == [first.id, first.id]


async def test_same_account_on_another_platform_is_another_connection(vault: Vault) -> None:
    a, _ = await vault.connections.upsert(grant("shopline"), account(), end_user_id=None)
    b, created = await vault.connections.upsert(grant("ecwid"), account(), end_user_id=None)
    assert created and a.id != b.id


async def test_concurrent_upserts_of_a_new_account_make_one_row(vault: Vault) -> None:
    results = await asyncio.gather(
        vault.connections.upsert(grant(access="x-" + "1" * 30), account(), end_user_id="u1"),
        vault.connections.upsert(grant(access="y-" + "2" * 30), account(), end_user_id="u1"),
    )
    assert sorted(created for _, created in results) == [False, True]
    assert results[0][0].id == results[1][0].id
    assert await vault.connections.count() == 1
    [row] = await vault.connections.find()
    assert row.version == 2
    kinds = sorted(e.kind for e in await vault.events.recent(row.id))
    assert kinds == ["connected", "reconnected"]


async def test_save_refresh_writes_rotated_token_and_event(vault: Vault, clock: FakeClock) -> None:
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    clock.advance(3000)
    rotated = grant(access="access-2-" + "n" * 24, refresh="refresh-2-" + "m" * 24)
    saved = await vault.connections.save_refresh(
        connection.id, rotated, used=grant().refresh_token or ""
    )
    assert saved.version == 2
    assert saved.last_refreshed_at == clock.now
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None
    assert stored.access_token == rotated.access_token
    assert stored.refresh_token == rotated.refresh_token
    assert (await vault.events.recent(connection.id))[0].kind == "refreshed"

    # The old refresh token is no longer the stored one: a late refresher must not write.
    late = grant(access="late-" + "z" * 24, refresh="late-refresh-" + "z" * 24)
    with pytest.raises(VersionConflict):
        await vault.connections.save_refresh(connection.id, late, used=grant().refresh_token or "")
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None and stored.refresh_token == rotated.refresh_token
    assert [e.kind for e in await vault.events.recent(connection.id)].count("refreshed") == 1


async def test_save_refresh_keeps_the_refresh_token_when_the_platform_sends_none(
    vault: Vault,
) -> None:
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    saved = await vault.connections.save_refresh(
        connection.id,
        grant(access="new-" + "q" * 24, refresh=None, refresh_ttl=None),
        used=grant().refresh_token or "",
    )
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None
    assert stored.refresh_token == grant().refresh_token
    assert saved.refresh_expires_at == grant().refresh_expires_at


async def test_save_refresh_on_a_missing_connection_conflicts(vault: Vault) -> None:
    with pytest.raises(VersionConflict):
        await vault.connections.save_refresh("con_missing", grant(), used="whatever")


async def test_save_refresh_is_atomic_with_its_event(
    vault: Vault, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    import shopkeys.store.repository as repository_module

    async def broken_event(*args: object, **kwargs: object) -> object:
        raise RuntimeError("event store down")

    monkeypatch.setattr(repository_module, "record_event", broken_event)
    with pytest.raises(RuntimeError):
        await vault.connections.save_refresh(
            connection.id,
            grant(access="n-" + "1" * 30, refresh="n-" + "2" * 30),
            used=grant().refresh_token or "",
        )
    monkeypatch.undo()
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None
    assert stored.refresh_token == grant().refresh_token
    assert stored.connection.version == 1


def _interleave(vault: Vault, write: str, params: tuple[object, ...]) -> list[bool]:
    """Make `vault` run `write` on its own SQLite connection right after its next read of a token.

    That is the window between a writer's read and its write, where another process (the CLI,
    a second instance) can commit. SQLite ignores FOR UPDATE, so only the write's own check can
    notice. Returns a flag list that is [True] once the interference happened.
    """
    import sqlite3

    url = vault.engine.url
    original = vault.connections._open_token
    done: list[bool] = []

    def open_then_interfere(row_id: str, field_name: str, value: str) -> str:
        plain = original(row_id, field_name, value)
        if not done:
            done.append(True)
            with sqlite3.connect(str(url.database), timeout=5) as other:
                other.execute(write, params)
        return plain

    vault.connections._open_token = open_then_interfere  # type: ignore[method-assign]
    return done


@pytest.fixture
async def sqlite_vault(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Vault]:
    engine = db.create_engine(db.database_url(f"sqlite:///{tmp_path / 'race.db'}", tmp_path))
    await db.upgrade(engine)
    try:
        yield Vault(engine, KeyRing.parse(TEST_KEYS), clock=clock)
    finally:
        await engine.dispose()


async def test_save_refresh_does_not_overwrite_a_concurrent_rotation(sqlite_vault: Vault) -> None:
    vault = sqlite_vault
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    theirs = "theirs-" + "t" * 24
    sealed = vault.keys.encrypt(theirs, f"connections:{connection.id}:refresh_token")
    interfered = _interleave(
        vault,
        "UPDATE connections SET refresh_token = ?, version = version + 1 WHERE id = ?",
        (sealed, connection.id),
    )
    with pytest.raises(VersionConflict):
        await vault.connections.save_refresh(
            connection.id,
            grant(access="n-" + "1" * 30, refresh="n-" + "2" * 30),
            used=grant().refresh_token or "",
        )
    assert interfered == [True]
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None and stored.refresh_token == theirs


async def test_reencrypt_does_not_overwrite_a_concurrent_rotation(sqlite_vault: Vault) -> None:
    vault = sqlite_vault
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    theirs = "theirs-" + "t" * 24
    sealed = vault.keys.encrypt(theirs, f"connections:{connection.id}:refresh_token")
    vault.keys = vault.keys.with_new_primary()
    interfered = _interleave(
        vault,
        "UPDATE connections SET refresh_token = ?, version = version + 1 WHERE id = ?",
        (sealed, connection.id),
    )
    assert await vault.connections.reencrypt() == 1
    assert interfered == [True]
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None and stored.refresh_token == theirs
    assert vault.keys.is_current((await _raw_tokens(vault.engine))[0][1])


async def _raw_tokens(engine: AsyncEngine) -> list[tuple[str, str | None]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(ConnectionRow.access_token, ConnectionRow.refresh_token)
        )
        return [(a, r) for a, r in rows]


async def test_record_refresh_failure(vault: Vault) -> None:
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    soft = await vault.connections.record_refresh_failure(connection.id, "platform 503", dead=False)
    assert soft is not None
    assert soft.status == "active" and soft.refresh_failures == 1 and soft.version == 1
    dead = await vault.connections.record_refresh_failure(connection.id, "invalid_grant", dead=True)
    assert dead is not None
    assert dead.status == NEEDS_REAUTH
    assert dead.refresh_failures == 2 and dead.last_error == "invalid_grant"
    assert dead.version == 2
    events = await vault.events.recent(connection.id)
    assert [e.kind for e in events[:2]] == ["needs_reauth", "refresh_failed"]
    assert events[0].detail == {"error": "invalid_grant"}
    assert await vault.connections.record_refresh_failure("con_missing", "x", dead=True) is None
    # Reconnecting makes it active again.
    again, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    assert again.status == "active" and again.refresh_failures == 0 and again.last_error is None


async def _session_with_state(vault: Vault, clock: FakeClock, state: str) -> str:
    session = await vault.sessions.create(
        provider="shopline",
        end_user_id="u1",
        return_to=None,
        token_hash=fingerprint("link-" + state),
        expires_at=clock.now + timedelta(minutes=30),
    )
    await vault.sessions.issue_state(
        session.id, fingerprint(state), clock.now + timedelta(minutes=10)
    )
    return session.id


async def test_consume_state_is_single_use_under_concurrency(
    vault: Vault, clock: FakeClock
) -> None:
    session_id = await _session_with_state(vault, clock, "state-a")
    checks = await asyncio.gather(
        *(vault.sessions.consume_state(fingerprint("state-a")) for _ in range(5))
    )
    winners = [c for c in checks if c.session is not None]
    assert len(winners) == 1
    assert winners[0].session is not None and winners[0].session.id == session_id
    assert winners[0].problem is None
    assert {c.problem for c in checks if c.session is None} == {StateProblem.USED}
    again = await vault.sessions.consume_state(fingerprint("state-a"))
    assert again.problem is StateProblem.USED


async def test_consume_state_expired_and_unknown(vault: Vault, clock: FakeClock) -> None:
    await _session_with_state(vault, clock, "state-b")
    clock.advance(600)  # exactly the lifetime: expired
    assert (
        await vault.sessions.consume_state(fingerprint("state-b"))
    ).problem is StateProblem.EXPIRED
    unknown = await vault.sessions.consume_state(fingerprint("never-issued"))
    assert unknown.problem is StateProblem.UNKNOWN and unknown.session is None


async def test_a_new_state_replaces_the_old_one(vault: Vault, clock: FakeClock) -> None:
    session_id = await _session_with_state(vault, clock, "first")
    await vault.sessions.issue_state(
        session_id, fingerprint("second"), clock.now + timedelta(minutes=10)
    )
    assert (
        await vault.sessions.consume_state(fingerprint("first"))
    ).problem is StateProblem.UNKNOWN
    assert (await vault.sessions.consume_state(fingerprint("second"))).session is not None


async def test_list_filters_and_pagination(vault: Vault) -> None:
    ids = {}
    for n in range(5):
        provider = "shopline" if n % 2 == 0 else "ecwid"
        connection, _ = await vault.connections.upsert(
            grant(provider, account_id=f"a{n}"), account(f"a{n}"), end_user_id=f"user{n % 2}"
        )
        ids[n] = connection.id
    await vault.connections.record_refresh_failure(ids[0], "dead", dead=True)

    everything = await vault.connections.find()
    assert [c.id for c in everything] == sorted(ids.values())
    assert {c.id for c in await vault.connections.find(provider="shopline")} == {
        ids[0],
        ids[2],
        ids[4],
    }
    assert {c.id for c in await vault.connections.find(end_user_id="user1")} == {ids[1], ids[3]}
    assert [c.id for c in await vault.connections.find(status=NEEDS_REAUTH)] == [ids[0]]
    assert {c.id for c in await vault.connections.find(provider="shopline", status="active")} == {
        ids[2],
        ids[4],
    }

    pages, after = [], None
    while True:
        page = await vault.connections.find(limit=2, after=after)
        if not page:
            break
        pages.append([c.id for c in page])
        after = page[-1].id
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == sorted(ids.values())


async def test_delete_keeps_a_disconnected_event(vault: Vault, clock: FakeClock) -> None:
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    session_id = await _session_with_state(vault, clock, "state-d")
    await vault.sessions.complete(session_id, connection.id)
    changed: list[str] = []
    vault.on_change(changed.append)
    deleted = await vault.connections.delete(connection.id)
    assert deleted is not None and deleted.id == connection.id
    assert await vault.connections.get(connection.id) is None
    assert await vault.connections.tokens(connection.id) is None
    assert [e.kind for e in await vault.events.recent(connection.id)] == [
        "disconnected",
        "connected",
    ]
    assert changed == [connection.id]
    assert await vault.connections.delete(connection.id) is None
    # The connect session outlives the connection, no longer pointing at it.
    session = await vault.sessions.get(session_id)
    assert session is not None and session.connection_id is None


async def test_reencrypt_after_rotation(vault: Vault) -> None:
    made = []
    for n in range(3):
        connection, _ = await vault.connections.upsert(
            grant(account_id=f"r{n}", refresh=None if n == 2 else f"refresh-{n}-" + "x" * 20),
            account(f"r{n}"),
            end_user_id=None,
        )
        made.append(connection.id)
    old = vault.keys
    vault.keys = old.with_new_primary()
    seen: list[tuple[int, int]] = []
    assert await vault.connections.reencrypt(lambda done, total: seen.append((done, total))) == 3
    assert seen == [(1, 3), (2, 3), (3, 3)]
    async with vault.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(ConnectionRow.access_token, ConnectionRow.refresh_token)
            )
        ).all()
    for access, refresh in rows:
        assert vault.keys.is_current(access)
        assert refresh is None or vault.keys.is_current(refresh)
    for n, connection_id in enumerate(made):
        stored = await vault.connections.tokens(connection_id)
        assert stored is not None and stored.access_token == grant().access_token
        assert stored.refresh_token == (None if n == 2 else f"refresh-{n}-" + "x" * 20)
    # The old ring alone can no longer read them; a second pass has nothing to do.
    old_vault = Vault(vault.engine, old)
    with pytest.raises(DecryptionError):
        await old_vault.connections.tokens(made[0])
    assert await vault.connections.reencrypt() == 0


async def test_a_token_copied_to_another_row_does_not_decrypt(
    vault: Vault, engine: AsyncEngine
) -> None:
    a, _ = await vault.connections.upsert(grant(account_id="a"), account("a"), end_user_id=None)
    b, _ = await vault.connections.upsert(grant(account_id="b"), account("b"), end_user_id=None)
    async with engine.begin() as connection:
        stolen = await connection.scalar(
            select(ConnectionRow.access_token).where(ConnectionRow.id == a.id)
        )
        await connection.execute(
            update(ConnectionRow).where(ConnectionRow.id == b.id).values(access_token=stolen)
        )
    with pytest.raises(DecryptionError) as caught:
        await vault.connections.tokens(b.id)
    assert grant().access_token not in str(caught.value)


async def test_api_keys_are_stored_hashed(vault: Vault, engine: AsyncEngine) -> None:
    value = "sk_" + "k" * 40
    key = await vault.api_keys.create(
        name="ci", scope="read", key_hash=fingerprint(value), prefix=value[:10]
    )
    assert await vault.api_keys.by_hash(fingerprint(value)) == key
    assert [k.id for k in await vault.api_keys.all()] == [key.id]
    revoked = await vault.api_keys.revoke(value[:10])
    assert revoked is not None and revoked.revoked_at is not None
    assert await vault.api_keys.revoke("key_missing") is None


# -- public tokens, end users and old databases --------------------------------------------------


async def test_public_token_is_sealed_kept_through_refresh_and_reencrypted(vault: Vault) -> None:
    public = "public_" + "p" * 30
    with_public = replace(grant("ecwid", refresh=None, access_ttl=None), public_token=public)
    connection, _ = await vault.connections.upsert(with_public, account(), end_user_id=None)
    assert connection.refreshable is False
    async with vault.engine.connect() as db_connection:
        sealed = await db_connection.scalar(select(ConnectionRow.public_token))
    assert sealed and public not in sealed and vault.keys.is_current(sealed)
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None and stored.public_token == public
    # Bound to its row and field like the other tokens: not readable as the access token.
    with pytest.raises(DecryptionError):
        vault.keys.decrypt(sealed, f"connections:{connection.id}:access_token")

    # A refresh (on a platform that had one) keeps the public token it does not repeat.
    refreshable, _ = await vault.connections.upsert(
        replace(grant(account_id="p2"), public_token=public), account("p2"), end_user_id=None
    )
    assert refreshable.refreshable is True
    await vault.connections.save_refresh(
        refreshable.id,
        grant(account_id="p2", access="access-2-" + "b" * 20),
        used=grant().refresh_token or "",
    )
    kept = await vault.connections.tokens(refreshable.id)
    assert kept is not None and kept.public_token == public
    assert kept.access_token == "access-2-" + "b" * 20

    # A later grant without one (a reinstall without the scope, an import) keeps it too.
    again, created = await vault.connections.upsert(
        grant("ecwid", refresh=None, access_ttl=None, access="secret_2"),
        account(),
        end_user_id=None,
    )
    assert not created
    kept_again = await vault.connections.tokens(again.id)
    assert kept_again is not None and kept_again.public_token == public
    assert kept_again.access_token == "secret_2"

    vault.keys = vault.keys.with_new_primary()
    assert await vault.connections.reencrypt() == 2
    async with vault.engine.connect() as db_connection:
        for value in await db_connection.scalars(select(ConnectionRow.public_token)):
            assert value is not None and vault.keys.is_current(value)
    again = await vault.connections.tokens(connection.id)
    assert again is not None and again.public_token == public


async def test_set_end_user_records_who_it_moved_from(vault: Vault, clock: FakeClock) -> None:
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    clock.advance(5)
    claimed = await vault.connections.set_end_user(connection.id, "merchant-9")
    assert claimed is not None and claimed.end_user_id == "merchant-9"
    assert claimed.version == connection.version
    assert claimed.updated_at == START + timedelta(seconds=5)
    assert await vault.connections.set_end_user(connection.id, "merchant-9") == claimed  # no change
    released = await vault.connections.set_end_user(connection.id, None, expected="merchant-9")
    assert released is not None and released.end_user_id is None
    details = [(e.kind, e.detail) for e in await vault.events.recent(connection.id)][:2]
    assert details == [
        ("end_user_changed", {"from": "merchant-9", "to": None}),
        ("end_user_changed", {"from": None, "to": "merchant-9"}),
    ]
    assert await vault.connections.set_end_user("con_missing", "x") is None
    # Claimed connections change hands only from the end user the caller names.
    await vault.connections.set_end_user(connection.id, "merchant-9")
    with pytest.raises(EndUserConflict):
        await vault.connections.set_end_user(connection.id, "intruder")
    with pytest.raises(EndUserConflict):
        await vault.connections.set_end_user(connection.id, None)
    with pytest.raises(EndUserConflict):
        await vault.connections.set_end_user(connection.id, "intruder", expected="someone-else")
    moved = await vault.connections.set_end_user(
        connection.id, "merchant-10", expected="merchant-9"
    )
    assert moved is not None and moved.end_user_id == "merchant-10"
    forced = await vault.connections.set_end_user(connection.id, None, force=True)
    assert forced is not None and forced.end_user_id is None
    # An install (no end user) of a claimed store keeps its end user.
    await vault.connections.set_end_user(connection.id, "merchant-9", force=True)
    again, created = await vault.connections.upsert(
        grant(), account(), end_user_id=None, source="app_market"
    )
    assert not created and again.end_user_id == "merchant-9"
    latest = (await vault.events.recent(connection.id))[0]
    assert latest.kind == "reconnected" and latest.detail["source"] == "app_market"


async def test_upgrade_from_0001_keeps_connections(empty_database_url: str, tmp_path: Path) -> None:
    """A database made by the first release gains the public token column, rows intact."""
    engine = db.create_engine(db.database_url(empty_database_url, tmp_path))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(
                lambda sync: db.command.upgrade(db._alembic_config(sync), "0001")
            )
        old = Vault(engine, KeyRing.parse(TEST_KEYS))
        assert await db.pending_migrations(engine) == ["0002", "0003", "0004", "0005", "0006"]
        # The first release's vault wrote no public_token column; insert as it did.
        async with engine.begin() as connection:
            await connection.execute(
                ConnectionRow.__table__.insert().values(
                    id="con_old",
                    provider="ecwid",
                    account_id="1003",
                    status="active",
                    access_token=old.keys.encrypt("secret_old", "connections:con_old:access_token"),
                    scopes=[],
                    shops=[],
                    metadata={},
                    version=1,
                    created_at=START,
                    updated_at=START,
                    refresh_failures=0,
                )
            )
        await db.upgrade(engine)
        assert await db.pending_migrations(engine) == []
        stored = await old.connections.tokens("con_old")
        assert stored is not None and stored.access_token == "secret_old"
        assert stored.public_token is None
    finally:
        await engine.dispose()


async def test_a_platform_name_longer_than_the_column_is_cut(vault: Vault) -> None:
    """A store name is the platform's to choose; on PostgreSQL an overlong one was a 500."""
    long_name = "Ü" * 300
    connection, _ = await vault.connections.upsert(
        grant(account_id="long-1"), account("long-1", name=long_name), end_user_id=None
    )
    assert connection.account_name == "Ü" * 255
    stored = await vault.connections.get(connection.id)
    assert stored is not None and stored.account_name == "Ü" * 255
