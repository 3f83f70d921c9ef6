"""Counts of rows by kind, for the gauges `/metrics` serves: aggregates only, never a row."""

from __future__ import annotations

from sqlalchemy import func, select

from shopkeys.platform import Platform
from shopkeys.store.deliveries import DELIVERY_STATUSES
from shopkeys.store.records import STATUSES
from shopkeys.store.repository import Repository
from shopkeys.store.tables import ConnectionRow, DeliveryRow


class StatsRepository(Repository):
    """How many connections and deliveries there are in each state."""

    async def connections_by_provider_and_status(self) -> dict[tuple[str, str], int]:
        """(provider, status) -> connections; every platform and status present, 0 if none."""
        counts = {(str(p), s): 0 for p in Platform for s in STATUSES}
        query = select(ConnectionRow.provider, ConnectionRow.status, func.count()).group_by(
            ConnectionRow.provider, ConnectionRow.status
        )
        async with self.engine.connect() as connection:
            for provider, status, count in await connection.execute(query):
                counts[(provider, status)] = int(count)
        return counts

    async def deliveries_by_status(self) -> dict[str, int]:
        """status -> deliveries in the outbox; every status present, 0 if none."""
        counts = dict.fromkeys(DELIVERY_STATUSES, 0)
        query = select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)
        async with self.engine.connect() as connection:
            for status, count in await connection.execute(query):
                counts[status] = int(count)
        return counts
