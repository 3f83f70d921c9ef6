"""The event log: what happened to each connection, and the change feed caches follow.

Events are written by the repository whose change they record, in that change's transaction
(`store/recording.py`), so no change is committed without its event; this repository reads them.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, or_, select

from shopkeys.store.records import Event
from shopkeys.store.repository import Repository
from shopkeys.store.tables import EventRow


class EventRepository(Repository):
    """Reading the event log."""

    async def recent(self, connection_id: str | None = None, *, limit: int = 50) -> list[Event]:
        """The newest events first, of one connection or of all."""
        query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
        if connection_id:
            query = query.where(EventRow.connection_id == connection_id)
        async with self._session() as session:
            return [_event(row) for row in await session.scalars(query)]

    async def last_id(self) -> int:
        """The newest event's id (0 when there is none): where a change feed starts."""
        async with self.engine.connect() as connection:
            return int(await connection.scalar(select(func.max(EventRow.id))) or 0)

    async def changes_since(
        self, event_id: int, also: Collection[int] = ()
    ) -> list[tuple[int, str | None]]:
        """(event id, connection id) of every event after `event_id` or in `also`, oldest first.

        Every change to a connection's tokens or status writes an event in the same transaction,
        so the event log doubles as a change feed: caches read it instead of every row.
        """
        condition = EventRow.id > event_id
        if also:
            condition = or_(condition, EventRow.id.in_(list(also)))
        query = select(EventRow.id, EventRow.connection_id).where(condition).order_by(EventRow.id)
        async with self.engine.connect() as connection:
            return [(int(i), c) for i, c in (await connection.execute(query)).all()]


def _event(row: EventRow) -> Event:
    return Event(
        id=row.id,
        connection_id=row.connection_id,
        provider=row.provider,
        kind=row.kind,
        detail=dict(row.detail or {}),
        created_at=row.created_at,
    )
