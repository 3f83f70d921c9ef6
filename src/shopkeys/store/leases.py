"""Leases on connections: which instance may call the platform to refresh a connection now.

A lease is an owner and an expiry on the connection's row. Taking one is a single conditional
UPDATE (free, lapsed, or already ours), so it works alike on PostgreSQL and SQLite and needs no
lock held across the platform's round trip: claim, commit, call, write back. A lease that lapses
(its holder crashed) is free for the next one to take. The write-back that stores the new tokens
releases the lease in its own transaction (`ConnectionRepository.save_refresh`).

The scheduler claims due connections in batches: on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
instances claiming at once each take different rows; on SQLite under the database's write lock
(`BEGIN IMMEDIATE`), one instance at a time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from shopkeys.store.records import ACTIVE
from shopkeys.store.repository import Repository
from shopkeys.store.tables import ConnectionRow

C = ConnectionRow


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What a caller waiting on another instance's refresh watches."""

    version: int
    status: str
    owner: str | None
    expires_at: datetime | None
    blocked_until: datetime | None


@dataclass(frozen=True, slots=True)
class Deadline:
    """An active connection whose grant ends soon: its refresh token's expiry, or its access
    token's where it has no refresh token."""

    connection_id: str
    provider: str
    deadline: datetime


def _free(now: datetime, owner: str) -> ColumnElement[bool]:
    return or_(C.lease_owner.is_(None), C.lease_owner == owner, C.lease_expires_at <= now)


def _due(now: datetime, providers: Collection[str]) -> list[ColumnElement[bool]]:
    """Active connections of `providers` due a refresh, with a live refresh token, not held
    back by a failure."""
    return [
        C.provider.in_(list(providers)),
        C.status == ACTIVE,
        C.refresh_token.is_not(None),
        C.next_refresh_at <= now,
        or_(C.blocked_until.is_(None), C.blocked_until <= now),
        # A dead refresh token refreshes nothing; the connection ends with its access token.
        or_(C.refresh_expires_at.is_(None), C.refresh_expires_at > now),
    ]


class LeaseRepository(Repository):
    """Taking, keeping and giving back connections' refresh leases."""

    async def acquire(self, connection_id: str, owner: str, until: datetime) -> bool:
        """Take (or extend) the lease on a connection until `until`; False if another holds it."""
        now = self.clock()
        statement = (
            update(C)
            .where(C.id == connection_id, _free(now, owner))
            .values(lease_owner=owner, lease_expires_at=until)
            .execution_options(synchronize_session=False)
        )

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(statement)
            return bool(getattr(result, "rowcount", 0))

        return await self._transaction(work)

    async def release(self, connection_id: str, owner: str) -> None:
        """Give the lease back, if `owner` still holds it."""
        statement = (
            update(C)
            .where(C.id == connection_id, C.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )

        async def work(session: AsyncSession) -> None:
            await session.execute(statement)

        await self._transaction(work)

    async def state(self, connection_id: str) -> LeaseState | None:
        """The connection's version, status, lease and hold; None when it is gone."""
        query = select(C.version, C.status, C.lease_owner, C.lease_expires_at, C.blocked_until)
        async with self._session() as session:
            row = (await session.execute(query.where(C.id == connection_id))).first()
        if row is None:
            return None
        return LeaseState(
            version=row[0], status=row[1], owner=row[2], expires_at=row[3], blocked_until=row[4]
        )

    async def claim_due(
        self, owner: str, until: datetime, limit: int, *, providers: Collection[str]
    ) -> list[str]:
        """Lease up to `limit` active connections of `providers` due a refresh and not held by
        anyone else.

        Oldest due first. The claim commits before any platform is called. Connections of
        platforms not configured here are left alone: nothing could refresh them.
        """
        now = self.clock()
        query = (
            select(C.id)
            .where(*_due(now, providers), _free(now, owner))
            .order_by(C.next_refresh_at)
            .limit(limit)
            # Rows another instance is claiming right now are skipped, not waited for.
            .with_for_update(skip_locked=True)
        )

        async def work(session: AsyncSession) -> list[str]:
            await self._write_lock(session)
            ids = list(await session.scalars(query))
            if ids:
                await session.execute(
                    update(C)
                    .where(C.id.in_(ids))
                    .values(lease_owner=owner, lease_expires_at=until)
                    .execution_options(synchronize_session=False)
                )
            return ids

        return await self._transaction(work)

    async def plan_unplanned(self, limit: int = 500) -> int:
        """Give a next refresh time to refreshable connections that have none (rows stored
        before the refresh engine existed); returns how many were planned."""
        query = (
            select(C)
            .where(
                C.status == ACTIVE,
                C.refresh_token.is_not(None),
                C.access_expires_at.is_not(None),
                C.next_refresh_at.is_(None),
            )
            .limit(limit)
        )

        async def work(session: AsyncSession) -> int:
            rows = list(await session.scalars(query))
            for row in rows:
                issued = row.last_refreshed_at or row.connected_at or row.created_at
                row.next_refresh_at = self.plan.next_refresh(issued, row.access_expires_at)
            return len(rows)

        return await self._retrying(work)

    async def deadlines(
        self, within: timedelta, *, renewing: Collection[str], limit: int = 500
    ) -> list[Deadline]:
        """Active connections whose grant ends within `within` and whose app was not yet told
        of that deadline.

        Connections of the `renewing` platforms (whose refresh pushes the refresh token's
        deadline back) count only while their refreshes fail: otherwise the next refresh
        moves the deadline anyway.
        """
        now = self.clock()
        horizon = now + within
        refreshing = and_(C.refresh_token.is_not(None), C.refresh_expires_at.is_not(None))
        ends_soon = or_(
            and_(refreshing, C.refresh_expires_at <= horizon),
            and_(C.refresh_token.is_(None), C.access_expires_at <= horizon),
        )
        renews = (
            and_(C.provider.in_(list(renewing)), C.refresh_token.is_not(None))
            if renewing
            else false()
        )
        deadline = case(
            (C.refresh_token.is_not(None), C.refresh_expires_at), else_=C.access_expires_at
        )
        query = (
            select(C.id, C.provider, deadline)
            .where(
                C.status == ACTIVE,
                ends_soon,
                or_(~renews, C.refresh_failures > 0),
                or_(C.reauth_notified_for.is_(None), C.reauth_notified_for != deadline),
            )
            .order_by(C.id)
            .limit(limit)
        )
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return [Deadline(id_, provider, when) for id_, provider, when in rows]

    async def ended(self, limit: int = 500) -> list[str]:
        """Active connections with nothing left to refresh with and an expired access token."""
        now = self.clock()
        query = (
            select(C.id)
            .where(
                C.status == ACTIVE,
                C.access_expires_at <= now,
                or_(C.refresh_token.is_(None), C.refresh_expires_at <= now),
            )
            .order_by(C.id)
            .limit(limit)
        )
        async with self._session() as session:
            return list(await session.scalars(query))

    async def count_due(self, *, providers: Collection[str]) -> int:
        """How many connections of `providers` a sweep would claim now: active, refreshable, due,
        not held back by a failure and not leased by anyone (what `shopkeys refresh --due` expects
        to do; the sweep itself may find more, or fewer)."""
        now = self.clock()
        unleased = or_(C.lease_owner.is_(None), C.lease_expires_at <= now)
        query = select(func.count()).select_from(C).where(*_due(now, providers), unleased)
        async with self._session() as session:
            return int(await session.scalar(query) or 0)
