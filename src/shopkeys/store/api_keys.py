"""API keys at rest: stored as hashes, recognised by their prefix, revoked but never deleted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shopkeys.store.ids import new_id
from shopkeys.store.records import ApiKey
from shopkeys.store.repository import Repository
from shopkeys.store.tables import ApiKeyRow


class ApiKeyRepository(Repository):
    """Storage of API keys (the flow that makes and checks them is `shopkeys.api_keys`)."""

    async def create(self, *, name: str, scope: str, key_hash: str, prefix: str) -> ApiKey:
        """Store a new key by its hash."""
        row = ApiKeyRow(
            id=new_id("key"),
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            scope=scope,
            created_at=self.clock(),
        )

        async def work(session: AsyncSession) -> ApiKey:
            session.add(row)
            await session.flush()
            return _api_key(row)

        return await self._transaction(work)

    async def all(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        async with self._session() as session:
            rows = await session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))
            return [_api_key(row) for row in rows]

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, whether revoked or not."""
        async with self._session() as session:
            row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
            return _api_key(row) if row else None

    async def by_id(self, key_id: str) -> ApiKey | None:
        """The key with this id, whether revoked or not."""
        async with self._session() as session:
            row = await session.get(ApiKeyRow, key_id)
            return _api_key(row) if row else None

    async def revoke(self, key_id_or_prefix: str) -> ApiKey | None:
        """Revoke the key with this id or prefix (once: a second revoke keeps the first time)."""

        async def work(session: AsyncSession) -> ApiKey | None:
            row = await session.get(ApiKeyRow, key_id_or_prefix)
            if row is None:
                row = await session.scalar(
                    select(ApiKeyRow).where(ApiKeyRow.prefix == key_id_or_prefix)
                )
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = self.clock()
            return _api_key(row)

        return await self._transaction(work)

    async def revoked_hashes(self, since: datetime) -> list[str]:
        """The hashes of the keys revoked at or after `since` (a running service forgets them)."""
        query = select(ApiKeyRow.key_hash).where(ApiKeyRow.revoked_at >= since)
        async with self.engine.connect() as connection:
            return list(await connection.scalars(query))


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scope=row.scope,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
