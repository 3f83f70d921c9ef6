"""The token cache follows the database: changes made elsewhere are seen at revalidation.

(The follower alone, on a scripted event log: `tests/refresh/test_change_feed.py`.)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from shopkeys.grant import Account, Grant
from shopkeys.runtime import open_runtime
from tests.conftest import make_settings
from tests.store.conftest import FakeClock


def _grant(token: str, now: datetime) -> Grant:
    return Grant(
        provider="shopline",
        access_token=token,
        refresh_token="refresh-" + token,
        access_expires_at=now + timedelta(days=30),
        refresh_expires_at=now + timedelta(days=31),
        scopes=["products"],
        account_id="merchant-1",
    )


async def test_revalidation_drops_entries_changed_by_another_process(
    database_url: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    now = clock.now
    settings = make_settings(database_url, tmp_path / "data")
    service = await open_runtime(settings, clock=clock)
    other = await open_runtime(settings, clock=clock, migrate=False)
    try:
        await service.tokens.watch_from_now()
        connection, _ = await service.vault.connections.upsert(
            _grant("first", now), Account("merchant-1", "M"), end_user_id="u"
        )
        assert (await service.tokens.fresh_token(connection.id)).access_token == "first"
        assert service.tokens.cached(connection.id) is not None

        # Another process (the CLI, a second instance) reconnects the store.
        await other.vault.connections.upsert(
            _grant("second", now), Account("merchant-1", "M"), end_user_id="u"
        )
        # Until revalidation the service still holds its entry; afterwards it reads the new one.
        assert service.tokens.cached(connection.id) is not None
        assert await service.tokens.revalidate() == 1
        assert service.tokens.cached(connection.id) is None
        assert (await service.tokens.fresh_token(connection.id)).access_token == "second"
        # An event seen once is not acted on again, though revalidation reads a window back.
        assert await service.tokens.revalidate() == 0

        # A connection deleted elsewhere is dropped too.
        await other.vault.connections.delete(connection.id)
        assert await service.tokens.revalidate() == 1
        assert service.tokens.cached(connection.id) is None
    finally:
        await other.close()
        await service.close()


async def test_revalidation_without_a_start_point_drops_everything(
    database_url: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    now = clock.now
    service = await open_runtime(make_settings(database_url, tmp_path / "data"), clock=clock)
    try:
        connection, _ = await service.vault.connections.upsert(
            _grant("first", now), Account("merchant-1", "M"), end_user_id="u"
        )
        await service.tokens.fresh_token(connection.id)
        assert await service.tokens.revalidate() == 1
        assert await service.tokens.revalidate() == 0
    finally:
        await service.close()
