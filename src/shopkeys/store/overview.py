"""What the operators' dashboard reads: connections that need attention first, a page at a time,
and the last days' refreshes and failures.

Pages are keyset-paginated on (attention, id): the next page starts after the last row seen, so
no page reads and skips the rows before it (the bench finds page 50 costs what page 1 does).
The attention is judged anew for each page, so a connection whose attention changes between two
pages may show on both or on neither; every other row shows once.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, and_, case, cast, func, literal, or_, select, tuple_

from shopkeys.store.connections import connection_record
from shopkeys.store.records import NEEDS_REAUTH, REVOKED, Connection
from shopkeys.store.repository import Repository, escape_like
from shopkeys.store.tables import ConnectionRow as C
from shopkeys.store.tables import EventRow


class Attention(enum.IntEnum):
    """Why a connection needs someone, most urgent first: the dashboard's sort order."""

    NEEDS_REAUTH = 0  # the merchant must connect the store again
    REAUTH_DUE = 1  # the app was told the grant ends soon
    FAILING = 2  # its last refreshes failed
    REVOKED = 3  # the merchant took the authorization back
    HEALTHY = 4

    @property
    def label(self) -> str:
        return self.name.lower()


#: The filter values the dashboard offers besides the statuses themselves.
ATTENTION_FILTER = "attention"


@dataclass(frozen=True, slots=True)
class ConnectionQuery:
    """The dashboard's filters; empty ones filter nothing."""

    provider: str | None = None
    #: A status, or `attention` for every connection that needs someone.
    status: str | None = None
    #: Part of the id, account id, account name or end user id, any case.
    search: str | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the next one starts after this row."""

    attention: int
    connection_id: str

    def encode(self) -> str:
        return f"{self.attention}.{self.connection_id}"

    @classmethod
    def decode(cls, text: str) -> Cursor | None:
        """The cursor `encode` wrote; None for anything else (a hand-edited address)."""
        rank, _, connection_id = text.partition(".")
        # ASCII digits only (`isdigit` takes "²"), and a rank that exists.
        if not re.fullmatch("[0-9]", rank) or int(rank) > max(Attention):
            return None
        if not connection_id or len(connection_id) > 40:
            return None
        return cls(int(rank), connection_id)


@dataclass(frozen=True, slots=True)
class Listed:
    connection: Connection
    attention: Attention


@dataclass(frozen=True, slots=True)
class ConnectionPage:
    rows: list[Listed]
    #: Where the next page starts; None on the last page.
    next: Cursor | None


@dataclass(frozen=True, slots=True)
class DayActivity:
    day: date
    refreshed: int
    failed: int


class OverviewRepository(Repository):
    """Reads for the dashboard: never a token."""

    def _attention(self, now: datetime) -> ColumnElement[int]:
        # "Reauth due" is what the refresh engine told the app: a `reauth_due` event went out
        # for the grant's current deadline (`reauth_notified_for`), which has not passed yet.
        told = and_(
            C.reauth_notified_for > now,
            or_(
                C.reauth_notified_for == C.refresh_expires_at,
                C.reauth_notified_for == C.access_expires_at,
            ),
        )
        return case(
            (C.status == NEEDS_REAUTH, int(Attention.NEEDS_REAUTH)),
            (C.status == REVOKED, int(Attention.REVOKED)),
            (told, int(Attention.REAUTH_DUE)),
            (C.refresh_failures > 0, int(Attention.FAILING)),
            else_=int(Attention.HEALTHY),
        )

    async def connections(
        self, query: ConnectionQuery, *, after: Cursor | None = None, limit: int = 50
    ) -> ConnectionPage:
        """A page of connections, those that need attention first, then by id."""
        attention = self._attention(self.clock()).label("attention")
        statement = (
            select(C, attention).order_by(attention, C.id).limit(limit + 1)  # +1: is there more?
        )
        if query.provider:
            statement = statement.where(C.provider == query.provider)
        if query.status == ATTENTION_FILTER:
            statement = statement.where(attention < int(Attention.HEALTHY))
        elif query.status:
            statement = statement.where(C.status == query.status)
        if query.search:
            # Lowered by the database on both sides: SQLite's `lower` leaves non-ASCII letters
            # as they are, and Python's would then never match them.
            pattern = func.lower(literal(f"%{escape_like(query.search)}%"))
            statement = statement.where(
                or_(
                    *(
                        func.lower(column).like(pattern, escape="\\")
                        for column in (C.id, C.account_id, C.account_name, C.end_user_id)
                    )
                )
            )
        if after is not None:
            statement = statement.where(
                tuple_(attention, C.id) > tuple_(after.attention, after.connection_id)
            )
        async with self._session() as session:
            found = (await session.execute(statement)).all()
        rows = [Listed(connection_record(row), Attention(rank)) for row, rank in found[:limit]]
        more = len(found) > limit
        last = rows[-1] if rows and more else None
        cursor = Cursor(int(last.attention), last.connection.id) if last else None
        return ConnectionPage(rows, cursor)

    async def attention_of(self, connection_id: str) -> Attention | None:
        """Why one connection needs attention, by the dashboard's rule; None if there is none."""
        attention = self._attention(self.clock())
        statement = select(attention).where(C.id == connection_id)
        async with self.engine.connect() as connection:
            rank = await connection.scalar(statement)
        return None if rank is None else Attention(rank)

    async def attention_counts(self) -> dict[Attention, int]:
        """How many connections there are of each kind of attention (every kind present)."""
        attention = self._attention(self.clock()).label("attention")
        statement = select(attention, func.count()).group_by(attention)
        counts = dict.fromkeys(Attention, 0)
        async with self.engine.connect() as connection:
            for rank, count in await connection.execute(statement):
                counts[Attention(rank)] = int(count)
        return counts

    async def daily_refreshes(self, days: int = 7) -> list[DayActivity]:
        """Refreshes and failed refreshes by UTC day, the last `days` days up to today, oldest
        first; every day present, 0 where nothing happened."""
        today = self.clock().date()
        first = today - timedelta(days=days - 1)
        since = datetime.combine(first, datetime.min.time(), tzinfo=self.clock().tzinfo)
        day = self._utc_day()
        statement = (
            select(day, EventRow.kind, func.count())
            .where(
                EventRow.kind.in_(("refreshed", "refresh_failed")),
                EventRow.created_at >= since,
            )
            .group_by(day, EventRow.kind)
        )
        counts: dict[tuple[str, str], int] = {}
        async with self.engine.connect() as connection:
            for when, kind, count in await connection.execute(statement):
                counts[(str(when), kind)] = int(count)
        return [
            DayActivity(
                d,
                counts.get((d.isoformat(), "refreshed"), 0),
                counts.get((d.isoformat(), "refresh_failed"), 0),
            )
            for d in (first + timedelta(days=n) for n in range(days))
        ]

    def _utc_day(self) -> ColumnElement[Any]:
        """An event's UTC day, whose text is `YYYY-MM-DD`, on either database."""
        if self.engine.dialect.name == "sqlite":
            # SQLite keeps naive UTC text (`UTCDateTime`): its date is its first ten characters.
            return func.substr(EventRow.created_at, 1, 10)
        return cast(func.timezone("UTC", EventRow.created_at), Date)
