"""What every repository of the vault shares: transactions, retried writes, sealing, change news.

A repository is one concern's operations over its tables (connections, connect sessions, events,
API keys, ...). They all sit on one `Storage`, so they use one engine, key ring and clock, and a
change committed through any of them reaches the same listeners.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, text
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from shopkeys.clock import Clock
from shopkeys.crypto import KeyRing
from shopkeys.refresh_plan import RefreshPlan
from shopkeys.store.recording import Subject, record_event

Listener = Callable[[str], None]
T = TypeVar("T")


class VersionConflict(Exception):
    """Someone else changed the connection since it was read, and the write did not happen.

    Trying again may succeed (the API answers 409 `conflict`). The message names the connection
    at most, never a token.
    """


@dataclass(frozen=True, slots=True)
class Backoff:
    """How many times a write is tried when its connection changes under it, and the waits.

    Writers that collided once would collide again in lockstep (on SQLite, whose FOR UPDATE is
    a no-op, every writer has the same window between its read and its write), so each waits
    a random while (full jitter) under a ceiling that doubles with every attempt. `sleep` and
    `jitter` are there for tests, which never wait.
    """

    attempts: int = 10
    first: float = 0.005
    ceiling: float = 0.2
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[], float] = random.random

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first)."""
        return self.jitter() * min(self.ceiling, self.first * 2.0 ** (retry - 1))


#: The backoff of every vault's retried writes (about a second in all, at worst).
BACKOFF = Backoff()


#: The PostgreSQL channel on which every committed change to a connection is announced, with
#: the connection's id as payload, so other instances' caches drop it at once.
CHANGES_CHANNEL = "shopkeys_changes"


class Storage:
    """One database, key ring, clock and set of change listeners, shared by every repository.

    `plan` says when each stored token comes due for a refresh; `outbox` whether events are
    queued for the app (a webhook URL is set).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        keys: KeyRing,
        clock: Clock,
        *,
        plan: RefreshPlan,
        outbox: bool,
    ) -> None:
        self.engine = engine
        # Replaced whole by `shopkeys keys rotate`: repositories read it at every use.
        self.keys = keys
        self.clock = clock
        self.plan = plan
        self.outbox = outbox
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.listeners: list[Listener] = []
        self.announces = engine.dialect.name == "postgresql"


class Repository:
    """The base of every repository: its transactions, retries, sealing and change notices."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    @property
    def engine(self) -> AsyncEngine:
        return self._storage.engine

    @property
    def keys(self) -> KeyRing:
        return self._storage.keys

    @property
    def clock(self) -> Clock:
        return self._storage.clock

    @property
    def plan(self) -> RefreshPlan:
        return self._storage.plan

    def _session(self) -> AsyncSession:
        """A session for reads; writes go through `_transaction` or `_retrying`."""
        return self._storage.sessions()

    async def _write_lock(self, session: AsyncSession) -> None:
        """On SQLite, take the database's write lock now, as the transaction's first statement.

        SQLite ignores FOR UPDATE: taking its write lock before the read makes concurrent
        writers (upserts of one store, claims of due work) wait their turn instead of reading
        the same rows and conflicting. On PostgreSQL the rows' own locks do that; no-op.
        """
        if self.engine.dialect.name == "sqlite":
            await session.execute(text("BEGIN IMMEDIATE"))

    async def _transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self._storage.sessions() as session, session.begin():
            return await work(session)

    async def _retrying(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in a transaction again when a connection changed under it.

        `work` reads the row afresh each time, so its checks (the refresh token still the one
        used, the ciphertext still under an old key) judge the newest state, and trying it again
        is safe. `VersionConflict` when the row kept changing through every attempt (`BACKOFF`).
        """
        backoff = BACKOFF
        for attempt in range(backoff.attempts):
            if attempt:
                await backoff.sleep(backoff.delay(attempt))
            try:
                return await self._transaction(work)
            except StaleDataError:
                continue
        raise VersionConflict("the connection kept changing; try again")

    def _seal(self, table: str, row_id: str, column: str, value: str) -> str:
        """Encrypt `value` for one place: a ciphertext copied to another row or column fails."""
        return self.keys.encrypt(value, f"{table}:{row_id}:{column}")

    def _unseal(self, table: str, row_id: str, column: str, value: str) -> str:
        return self.keys.decrypt(value, f"{table}:{row_id}:{column}")

    async def _count_key_ids(self, query: Select[*tuple[Any, ...]]) -> dict[str, int]:
        """How many of the ciphertexts `query` selects name each key id (None and "" skipped).

        Read in batches, so a large table is never held in memory at once.
        """
        counts: dict[str, int] = {}
        async with self.engine.connect() as connection:
            result = await connection.stream(query.execution_options(yield_per=1000))
            async for row in result:
                for value in row:
                    key_id = KeyRing.key_id_of(value) if value else None
                    if key_id is not None:
                        counts[key_id] = counts.get(key_id, 0) + 1
        return counts

    async def _event(
        self,
        session: AsyncSession,
        row: Subject,
        kind: str,
        now: datetime,
        detail: dict[str, Any],
    ) -> None:
        """Record `kind` for `row` in this transaction (and queue it for the app)."""
        await record_event(session, row, kind, now, detail, outbox=self._storage.outbox)

    def _after_commit(self, session: AsyncSession, connection_id: str) -> None:
        """Tell the listeners (the token cache) about the connection once `session` commits,
        and on PostgreSQL every other instance too (NOTIFY is delivered at commit)."""

        def changed(_session: object) -> None:
            for listener in self._storage.listeners:
                listener(connection_id)

        # Listeners must not see a change that is then rolled back.
        sa_event.listen(session.sync_session, "after_commit", changed, once=True)
        if self._storage.announces:

            def announce(sync_session: Session) -> None:
                # Runs inside the transaction, which NOTIFY needs; sent only if it commits.
                sync_session.execute(
                    text("SELECT pg_notify(:channel, :id)"),
                    {"channel": CHANGES_CHANNEL, "id": connection_id},
                )

            sa_event.listen(session.sync_session, "before_commit", announce, once=True)


def escape_like(text: str) -> str:
    """`text` matched literally by LIKE ... ESCAPE '\\': its wildcards and escape escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
