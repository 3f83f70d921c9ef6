"""API keys from memory: rechecked in the background, single look-up under load, revocation seen."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shopkeys.api_keys import RECHECK_AFTER, ApiKeys
from shopkeys.runtime import open_runtime
from tests.conftest import make_settings


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_keys_are_rechecked_without_stalling_and_revocation_is_seen(
    database_url: str, tmp_path: Path
) -> None:
    clock = _Clock()
    settings = make_settings(database_url, tmp_path / "data")
    service = await open_runtime(settings)
    cli = await open_runtime(settings, migrate=False)
    try:
        keys = ApiKeys(service.vault, clock=clock)
        record, value = await cli.api_keys.create("app")
        assert await keys.check(value) == record
        assert keys.check_cached(value) == (True, record)

        # Past the recheck time the key is still served from memory, while one look-up runs.
        clock.now += RECHECK_AFTER + timedelta(seconds=1)
        assert keys.check_cached(value) == (True, record)
        await asyncio.gather(*keys._pending.values())

        # Revoked by another process: the next recheck finds out, and the key stops working.
        await cli.api_keys.revoke(record.id)
        clock.now += RECHECK_AFTER + timedelta(seconds=1)
        assert keys.check_cached(value) == (True, record)
        await asyncio.gather(*keys._pending.values())
        assert keys.check_cached(value) == (True, None)
        assert await keys.check(value) is None
        assert await keys.check("sk_not_a_key") is None
    finally:
        await cli.close()
        await service.close()


async def test_many_waiters_share_one_database_look_up(database_url: str, tmp_path: Path) -> None:
    service = await open_runtime(make_settings(database_url, tmp_path / "data"))
    try:
        record, value = await service.api_keys.create("app")
        cold = ApiKeys(service.vault)
        looked_up = 0
        original = service.vault.api_keys.by_hash

        async def counting(digest: str):  # type: ignore[no-untyped-def]
            nonlocal looked_up
            looked_up += 1
            return await original(digest)

        service.vault.api_keys.by_hash = counting  # type: ignore[method-assign]
        results = await asyncio.gather(*(cold.check(value) for _ in range(20)))
        assert results == [record] * 20
        assert looked_up == 1
    finally:
        await service.close()
