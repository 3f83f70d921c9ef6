"""The dashboard's reads: attention first, keyset pages, search, and the week's refreshes."""

from __future__ import annotations

from datetime import timedelta

from shopkeys.store.overview import (
    ATTENTION_FILTER,
    Attention,
    ConnectionQuery,
    Cursor,
    DayActivity,
)
from shopkeys.store.vault import Vault
from tests.store.conftest import FakeClock, account, grant


async def _connect(vault: Vault, account_id: str, **kwargs: object) -> str:
    connection, _ = await vault.connections.upsert(
        grant(account_id=account_id, **kwargs),  # type: ignore[arg-type]
        account(account_id, name=f"Store {account_id}"),
        end_user_id=f"user-{account_id}",
    )
    return connection.id


async def test_connections_that_need_someone_come_first(vault: Vault, clock: FakeClock) -> None:
    healthy = await _connect(vault, "a-healthy")
    failing = await _connect(vault, "b-failing")
    await vault.connections.record_refresh_failure(
        failing,
        "platform down",
        dead=False,
        kind="temporary",
        retry_at=clock.now + timedelta(minutes=5),
    )
    dead = await _connect(vault, "c-dead")
    await vault.connections.record_refresh_failure(dead, "invalid_grant", dead=True)
    revoked = await _connect(vault, "d-revoked")
    await vault.connections.mark_revoked(revoked, "uninstalled")
    due = await _connect(vault, "e-due")
    stored = await vault.connections.get(due)
    assert stored is not None and stored.refresh_expires_at is not None
    await vault.connections.note_reauth_due(due, stored.refresh_expires_at)

    page = await vault.overview.connections(ConnectionQuery())
    assert [(r.connection.id, r.attention) for r in page.rows] == [
        (dead, Attention.NEEDS_REAUTH),
        (due, Attention.REAUTH_DUE),
        (failing, Attention.FAILING),
        (revoked, Attention.REVOKED),
        (healthy, Attention.HEALTHY),
    ]
    assert page.next is None
    counts = await vault.overview.attention_counts()
    assert counts == dict.fromkeys(Attention, 1)
    needing = await vault.overview.connections(ConnectionQuery(status=ATTENTION_FILTER))
    assert healthy not in {r.connection.id for r in needing.rows}
    assert len(needing.rows) == 4

    # Once the deadline it warned of has passed, "reauth due" is no longer the reason.
    clock.advance(86400 * 31)
    later = await vault.overview.attention_counts()
    assert later[Attention.REAUTH_DUE] == 0


async def test_keyset_pages_cover_every_row_once(vault: Vault) -> None:
    ids = [await _connect(vault, f"acct-{n:03}") for n in range(23)]
    failing = ids[7]
    await vault.connections.record_refresh_failure(failing, "down", dead=False)
    seen: list[str] = []
    cursor: Cursor | None = None
    pages = 0
    while True:
        page = await vault.overview.connections(ConnectionQuery(), after=cursor, limit=5)
        seen.extend(r.connection.id for r in page.rows)
        pages += 1
        if page.next is None:
            break
        cursor = Cursor.decode(page.next.encode())
    assert pages == 5
    assert seen[0] == failing
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


async def test_search_matches_parts_of_names_and_ids_literally(vault: Vault) -> None:
    plain = await _connect(vault, "shop-100")
    odd = await _connect(vault, "shop_%x")

    async def found(text: str) -> set[str]:
        page = await vault.overview.connections(ConnectionQuery(search=text))
        return {r.connection.id for r in page.rows}

    assert await found("STORE SHOP-1") == {plain}
    assert await found("user-shop") == {plain, odd}
    assert await found("_%") == {odd}  # wildcards match themselves
    assert await found(plain[-6:].upper()) == {plain}
    assert await found("nothing") == set()
    accented = await _connect(vault, "ÖSTERREICH-1")
    assert await found("ÖSTERREICH") == {accented}
    assert await found("eich-1") == {accented}
    if vault.engine.dialect.name == "postgresql":
        # SQLite's `lower` folds ASCII letters only: there, other letters match as typed.
        assert await found("österreich") == {accented}
    only = await vault.overview.connections(ConnectionQuery(provider="ecwid"))
    assert only.rows == []


def test_a_cursor_from_the_address_is_checked() -> None:
    assert Cursor.decode("2.con_abc") == Cursor(2, "con_abc")
    for bad in ("", "x.con", "2.", "-1.con", "2." + "c" * 41, "².con", "12.con", "9.con"):
        assert Cursor.decode(bad) is None


async def test_refreshes_by_day(vault: Vault, clock: FakeClock) -> None:
    cid = await _connect(vault, "acct-1")
    used = grant().refresh_token or ""
    for day in range(9):  # two refreshes a day, oldest 8 days ago
        for _ in range(2):
            fresh = grant(access=f"access-{day}-{_}-" + "x" * 20, refresh=used)
            await vault.connections.save_refresh(cid, fresh, used=used)
        if day % 3 == 0:
            await vault.connections.record_refresh_failure(cid, "down", dead=False)
        clock.advance(86400)
    clock.advance(-86400)
    week = await vault.overview.daily_refreshes(7)
    assert [d.day for d in week] == [clock.now.date() - timedelta(days=n) for n in range(6, -1, -1)]
    assert all(d.refreshed == 2 for d in week)
    assert [d.failed for d in week] == [1 if n % 3 == 0 else 0 for n in range(2, 9)]
    assert week[-1] == DayActivity(clock.now.date(), 2, 1 if 8 % 3 == 0 else 0)
