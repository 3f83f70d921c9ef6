"""The outbox: events on their way to the app's webhook URL, claimed by senders under a lease.

`store/recording.py` writes a delivery in the transaction that records its event; this
repository hands the due ones to senders (`events/sender.py`) and records what became of each
attempt. A connection's events go out one at a time, oldest first: only the oldest pending
delivery of a connection is ever due, so the app never sees a later change before an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from shopkeys.store.repository import Repository
from shopkeys.store.tables import DeliveryRow

PENDING = "pending"
DELIVERED = "delivered"
#: Given up: no more attempts unless an operator asks for one (`shopkeys events redeliver`).
FAILED = "failed"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for the app, and how its delivery went so far."""

    #: The `webhook-id` header, the same on every attempt.
    id: str
    event_id: int
    connection_id: str | None
    type: str
    #: The body, as signed and sent: `{"type", "timestamp", "data"}`.
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    #: The HTTP status of the last attempt (None: no answer, or no attempt yet).
    last_status: int | None
    #: What went wrong last, in a few words (never a secret), or None.
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """How many deliveries wait for an attempt, and how many were given up."""

    pending: int
    failed: int


class DeliveryRepository(Repository):
    """Claiming due deliveries, recording their outcomes, and the operators' view of them."""

    async def claim_due(
        self, owner: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        """Lease to `owner` until `lease_until` up to `limit` deliveries due at `now`.

        Only a connection's oldest pending delivery is ever claimed, and only while none of
        its deliveries is leased, so a later event of a connection waits for every earlier
        one still pending (given-up ones do not count).
        Concurrent senders get disjoint sets: on PostgreSQL each skips the rows another has
        locked; on SQLite claims take the write lock first and so run one after another.
        """

        async def work(session: AsyncSession) -> list[Delivery]:
            # A second sender reads only after this one's leases are committed.
            await self._write_lock(session)
            older = aliased(DeliveryRow)
            earlier_pending = (
                select(older.id)
                .where(
                    older.connection_id == DeliveryRow.connection_id,
                    older.status == PENDING,
                    older.event_id < DeliveryRow.event_id,
                )
                .exists()
            )
            # A redelivered old event can be the oldest pending one while a later one is
            # being sent: it waits for that attempt, so a connection has one in flight at most.
            other = aliased(DeliveryRow)
            in_flight = (
                select(other.id)
                .where(
                    other.connection_id == DeliveryRow.connection_id,
                    other.status == PENDING,
                    other.lease_expires_at > now,
                )
                .exists()
            )
            query = (
                select(DeliveryRow)
                .where(
                    DeliveryRow.status == PENDING,
                    DeliveryRow.next_attempt_at <= now,
                    _not_leased(now),
                    ~earlier_pending,
                    ~in_flight,
                )
                .order_by(DeliveryRow.next_attempt_at, DeliveryRow.event_id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = list(await session.scalars(query))
            for row in rows:
                row.lease_owner = owner
                row.lease_expires_at = lease_until
            return [_delivery(row) for row in rows]

        return await self._transaction(work)

    async def delivered(self, delivery_id: str, owner: str, status_code: int) -> bool:
        """Record a delivery the app accepted; False when `owner` no longer held its lease."""
        return await self._outcome(
            delivery_id,
            owner,
            status=DELIVERED,
            delivered_at=self.clock(),
            last_status=status_code,
            last_error=None,
        )

    async def retry(
        self,
        delivery_id: str,
        owner: str,
        at: datetime,
        status_code: int | None,
        error: str,
    ) -> bool:
        """Record a failed attempt and schedule the next at `at`; False as for `delivered`."""
        return await self._outcome(
            delivery_id,
            owner,
            next_attempt_at=at,
            last_status=status_code,
            last_error=error,
        )

    async def give_up(
        self, delivery_id: str, owner: str, status_code: int | None, error: str
    ) -> bool:
        """Record a failed last attempt: no more unless redelivered; False as for `delivered`."""
        return await self._outcome(
            delivery_id,
            owner,
            status=FAILED,
            last_status=status_code,
            last_error=error,
        )

    async def _outcome(self, delivery_id: str, owner: str, **values: Any) -> bool:
        # Only the lease holder writes: a sender that was too slow and lost its lease to another
        # must not overwrite that one's outcome (the app may then get the event twice, and
        # drops the repeat by its webhook-id).
        statement = (
            update(DeliveryRow)
            .where(
                DeliveryRow.id == delivery_id,
                DeliveryRow.status == PENDING,
                DeliveryRow.lease_owner == owner,
            )
            .values(
                attempts=DeliveryRow.attempts + 1,
                lease_owner=None,
                lease_expires_at=None,
                **values,
            )
            .execution_options(synchronize_session=False)
        )

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(statement)
            return bool(getattr(result, "rowcount", 0))

        return await self._transaction(work)

    async def get(self, delivery_id: str) -> Delivery | None:
        """One delivery, or None."""
        async with self._session() as session:
            row = await session.get(DeliveryRow, delivery_id)
            return _delivery(row) if row else None

    async def recent(
        self,
        limit: int = 50,
        status: str | None = None,
        connection_id: str | None = None,
        before: tuple[int, str] | None = None,
    ) -> list[Delivery]:
        """The newest deliveries first, filtered by status and connection when given; `before`
        (the event id and id of the last delivery seen) starts the next page."""
        query = (
            select(DeliveryRow)
            .order_by(DeliveryRow.event_id.desc(), DeliveryRow.id.desc())
            .limit(limit)
        )
        if status:
            query = query.where(DeliveryRow.status == status)
        if connection_id:
            query = query.where(DeliveryRow.connection_id == connection_id)
        if before is not None:
            query = query.where(tuple_(DeliveryRow.event_id, DeliveryRow.id) < tuple_(*before))
        async with self._session() as session:
            return [_delivery(row) for row in await session.scalars(query)]

    async def last_attempted(self) -> Delivery | None:
        """The newest delivery that was tried at least once: did sending to the app work?"""
        query = (
            select(DeliveryRow)
            .where(DeliveryRow.attempts > 0)
            .order_by(DeliveryRow.event_id.desc(), DeliveryRow.id.desc())
            .limit(1)
        )
        async with self._session() as session:
            row = await session.scalar(query)
            return _delivery(row) if row else None

    async def redeliver(self, delivery_id: str) -> Delivery | None:
        """Send the delivery again as soon as a sender looks (its attempts so far are kept).

        A redelivered event takes its place in its connection's order again: later events of
        the connection wait for it. None when there is no such delivery.
        """

        async def work(session: AsyncSession) -> Delivery | None:
            row = await session.get(DeliveryRow, delivery_id, with_for_update=True)
            if row is None:
                return None
            row.status = PENDING
            row.next_attempt_at = self.clock()
            # The lease is left alone: an attempt under way still records its own outcome.
            return _delivery(row)

        return await self._transaction(work)

    async def redeliver_failed(self) -> int:
        """Requeue every given-up delivery, to be sent now; how many there were."""
        statement = (
            update(DeliveryRow)
            .where(DeliveryRow.status == FAILED)
            .values(status=PENDING, next_attempt_at=self.clock())
            .execution_options(synchronize_session=False)
        )

        async def work(session: AsyncSession) -> int:
            result = await session.execute(statement)
            return int(getattr(result, "rowcount", 0) or 0)

        return await self._transaction(work)

    async def counts(self) -> DeliveryCounts:
        """How many deliveries are pending and how many were given up."""
        query = (
            select(DeliveryRow.status, func.count())
            .where(DeliveryRow.status.in_((PENDING, FAILED)))
            .group_by(DeliveryRow.status)
        )
        async with self._session() as session:
            found = {status: int(count) for status, count in (await session.execute(query)).all()}
        return DeliveryCounts(pending=found.get(PENDING, 0), failed=found.get(FAILED, 0))


def _not_leased(now: datetime) -> ColumnElement[bool]:
    """No sender holds the delivery: never leased, or its lease ran out (the sender died)."""
    return or_(DeliveryRow.lease_expires_at.is_(None), DeliveryRow.lease_expires_at <= now)


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=row.event_id,
        connection_id=row.connection_id,
        type=row.type,
        payload=dict(row.payload or {}),
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )
