"""A migrated vault on each database (SQLite and PostgreSQL via the `database_url` fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shopkeys.crypto import KeyRing
from shopkeys.grant import Account, Grant, Shop
from shopkeys.store import database as db
from shopkeys.store.vault import Vault
from tests.conftest import TEST_KEYS

START = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(database_url: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    created = db.create_engine(db.database_url(database_url, tmp_path))
    await db.upgrade(created)
    try:
        yield created
    finally:
        await created.dispose()


@pytest.fixture
def vault(engine: AsyncEngine, clock: FakeClock) -> Vault:
    return Vault(engine, KeyRing.parse(TEST_KEYS), clock=clock)


def grant(
    provider: str = "shopline",
    *,
    access: str = "access-1-" + "a" * 24,
    refresh: str | None = "refresh-1-" + "r" * 24,
    account_id: str = "acct-1",
    access_ttl: float | None = 3600,
    refresh_ttl: float | None = 86400 * 30,
) -> Grant:
    return Grant(
        provider=provider,
        access_token=access,
        refresh_token=refresh,
        access_expires_at=START + timedelta(seconds=access_ttl) if access_ttl else None,
        refresh_expires_at=START + timedelta(seconds=refresh_ttl) if refresh_ttl else None,
        scopes=["read_orders"],
        account_id=account_id,
        raw={"token_type": "Bearer"},
    )


def account(account_id: str = "acct-1", name: str | None = "Acme Store") -> Account:
    return Account(
        account_id=account_id, name=name, shops=[Shop(id="s1", name="Main", region="US")]
    )
