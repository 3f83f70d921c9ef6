"""The token cache follows the database: changes made elsewhere are seen at revalidation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from shopkeys.grant import Account, Grant
from shopkeys.runtime import open_runtime
from tests.conftest import make_settings


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
    now = datetime.now(UTC)
    settings = make_settings(database_url, tmp_path / "data")
    service = await open_runtime(settings)
    other = await open_runtime(settings, migrate=False)
    try:
        await service.tokens.watch_from_now()
        connection, _ = await service.vault.upsert_connection(
            _grant("first", now), Account("merchant-1", "M"), end_user_id="u"
        )
        assert (await service.tokens.fresh_token(connection.id)).access_token == "first"
        assert service.tokens.cached(connection.id) is not None

        # Another process (the CLI, a second instance) reconnects the store.
        await other.vault.upsert_connection(
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
        await other.vault.delete(connection.id)
        assert await service.tokens.revalidate() == 1
        assert service.tokens.cached(connection.id) is None
    finally:
        await other.close()
        await service.close()


async def test_revalidation_without_a_start_point_drops_everything(
    database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    service = await open_runtime(make_settings(database_url, tmp_path / "data"))
    try:
        connection, _ = await service.vault.upsert_connection(
            _grant("first", now), Account("merchant-1", "M"), end_user_id="u"
        )
        await service.tokens.fresh_token(connection.id)
        assert await service.tokens.revalidate() == 1
        assert await service.tokens.revalidate() == 0
    finally:
        await service.close()


class _FeedVault:
    """Just enough of a vault to script the change feed."""

    def __init__(self) -> None:
        self.events: dict[int, str] = {}

    def on_change(self, listener: object) -> None:
        pass

    async def last_event_id(self) -> int:
        return max(self.events, default=0)

    async def changes_since(self, event_id: int, also: object = ()) -> list[tuple[int, str]]:
        wanted = set(also)  # type: ignore[call-overload]
        return sorted((i, c) for i, c in self.events.items() if i > event_id or i in wanted)


async def test_an_event_committed_late_is_still_seen() -> None:
    from shopkeys.refresh import FreshToken, TokenService, _Cached

    now = datetime.now(UTC)
    vault = _FeedVault()
    tokens = TokenService(vault, {}, None, clock=lambda: now)  # type: ignore[arg-type]
    await tokens.watch_from_now()

    def cache(connection_id: str) -> None:
        token = FreshToken(connection_id, "shopline", "a", "t", None)
        tokens._cache[connection_id] = _Cached(token, now + timedelta(hours=1))

    cache("con_a")
    cache("con_b")
    # Event 1 and 3 are committed; 2 (for con_a) is still in flight in another transaction.
    vault.events = {1: "con_x", 3: "con_b"}
    assert await tokens.revalidate() == 1
    assert tokens.cached("con_a") is not None
    # It commits later, with an id lower than one already seen, and is not missed.
    vault.events[2] = "con_a"
    assert await tokens.revalidate() == 1
    assert tokens.cached("con_a") is None
    assert await tokens.revalidate() == 0
