"""The token vault: intent-named operations over the tables, tokens encrypted on the way in.

Every write happens in one transaction with the event that records it, and every change to a
connection's tokens or status bumps its `version` and notifies the in-process listeners (the token
cache), so nothing serves a token the vault has replaced.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy import func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from shopkeys.clock import Clock, utc_now
from shopkeys.crypto import KeyRing
from shopkeys.grant import Account, Grant, Shop
from shopkeys.store.records import (
    ACTIVE,
    NEEDS_REAUTH,
    ApiKey,
    AuthSession,
    Connection,
    Event,
    StoredTokens,
)
from shopkeys.store.tables import ApiKeyRow, AuthSessionRow, ConnectionRow, EventRow

Listener = Callable[[str], None]
T = TypeVar("T")
#: The longest account name the connections table holds.
ACCOUNT_NAME_LENGTH = 255


class StateProblem(Enum):
    """Why a callback's state cannot be used."""

    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"
    WRONG_PROVIDER = "wrong_provider"


@dataclass(frozen=True, slots=True)
class StateCheck:
    session: AuthSession | None
    problem: StateProblem | None


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


class EndUserConflict(Exception):
    """The connection belongs to another end user than the one a change expected."""


def new_id(prefix: str) -> str:
    """A random public id such as `con_3kTm...`."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


class Vault:
    """Storage of connections, connect sessions, events and API keys."""

    def __init__(self, engine: AsyncEngine, keys: KeyRing, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.keys = keys
        self.clock = clock
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        """Call `listener(connection_id)` after every committed change to a connection."""
        self._listeners.append(listener)

    def _changed(self, connection_id: str) -> None:
        for listener in self._listeners:
            listener(connection_id)

    async def _transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self._sessions() as session, session.begin():
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

    # -- connections ----------------------------------------------------------------------------

    def _seal(self, row_id: str, field_name: str, value: str) -> str:
        return self.keys.encrypt(value, f"connections:{row_id}:{field_name}")

    def _open(self, row_id: str, field_name: str, value: str) -> str:
        return self.keys.decrypt(value, f"connections:{row_id}:{field_name}")

    def _seal_optional(self, row_id: str, field_name: str, value: str | None) -> str | None:
        return self._seal(row_id, field_name, value) if value else None

    def _open_optional(self, row_id: str, field_name: str, value: str | None) -> str | None:
        return self._open(row_id, field_name, value) if value else None

    def _write_grant(self, row: ConnectionRow, grant: Grant) -> None:
        row.access_token = self._seal(row.id, "access_token", grant.access_token)
        row.refresh_token = self._seal_optional(row.id, "refresh_token", grant.refresh_token)
        if grant.public_token:
            # A public token comes only with some authorizations and cannot be fetched again:
            # a grant without one (a refresh, an import, a reinstall) keeps the stored one.
            row.public_token = self._seal(row.id, "public_token", grant.public_token)
        row.access_expires_at = grant.access_expires_at
        row.refresh_expires_at = grant.refresh_expires_at
        row.scopes = list(grant.scopes)
        row.metadata_ = dict(grant.raw)

    async def upsert_connection(
        self,
        grant: Grant,
        account: Account,
        *,
        end_user_id: str | None,
        source: str | None = None,
    ) -> tuple[Connection, bool]:
        """Store a new grant for (provider, account); True when the connection is new.

        Reconnecting a store updates its connection (new tokens, active again) rather than
        adding a second one; an `end_user_id` of None keeps the end user it had. `source` names
        where the grant came from (an app market install, say) in the event.
        """

        async def work(session: AsyncSession) -> tuple[Connection, bool]:
            if self.engine.dialect.name == "sqlite":
                # SQLite ignores FOR UPDATE: its write lock, taken before the read, makes
                # concurrent upserts of one store wait their turn instead of conflicting.
                await session.execute(text("BEGIN IMMEDIATE"))
            return await self._upsert(session, grant, account, end_user_id, source)

        for attempt in range(2):
            try:
                return await self._retrying(work)
            except IntegrityError as exc:
                if not _lost_insert_race(exc):
                    raise
                # Two writers inserted the same new store at once: the loser's next attempt reads
                # the winner's row and updates it. Losing twice, the row came and went meanwhile.
                if attempt:
                    raise VersionConflict("the connection kept changing; try again") from None
        raise AssertionError("unreachable")

    async def _upsert(
        self,
        session: AsyncSession,
        grant: Grant,
        account: Account,
        end_user_id: str | None,
        source: str | None,
    ) -> tuple[Connection, bool]:
        now = self.clock()
        row = await session.scalar(
            select(ConnectionRow)
            .where(
                ConnectionRow.provider == grant.provider,
                ConnectionRow.account_id == account.account_id,
            )
            .with_for_update()
        )
        created = row is None
        if row is None:
            row = ConnectionRow(
                id=new_id("con"),
                provider=grant.provider,
                account_id=account.account_id,
                version=1,
                created_at=now,
                refresh_failures=0,
            )
            session.add(row)
        else:
            row.version += 1
        self._write_grant(row, grant)
        # A platform's store name can outgrow the column; the id is what identifies the store.
        name = account.name or grant.account_name
        row.account_name = name[:ACCOUNT_NAME_LENGTH] if name else None
        # The merchant proved control of the store by authorizing it: the store follows them,
        # and the move is recorded so the app sees it.
        moved_from = (
            row.end_user_id
            if not created
            and end_user_id is not None
            and row.end_user_id not in (None, end_user_id)
            else None
        )
        if end_user_id is not None or created:
            row.end_user_id = end_user_id
        row.connected_at = now
        row.status = ACTIVE
        row.shops = [_shop_json(shop) for shop in account.shops]
        row.updated_at = now
        row.refresh_failures = 0
        row.last_error = None
        row.next_refresh_at = None
        await session.flush()
        detail: dict[str, Any] = {"version": row.version}
        if source:
            detail["source"] = source
        session.add(_event(row, "connected" if created else "reconnected", now, detail))
        if moved_from is not None:
            session.add(_event(row, "moved", now, {"from": moved_from, "to": end_user_id}))
        record = _connection(row)
        self._after_commit(session, row.id)
        return record, created

    def _after_commit(self, session: AsyncSession, connection_id: str) -> None:
        # Listeners must not see a change that is then rolled back.
        sa_event.listen(
            session.sync_session, "after_commit", lambda _s: self._changed(connection_id), once=True
        )

    async def get(self, connection_id: str) -> Connection | None:
        """The connection without its tokens, or None."""
        async with self._sessions() as session:
            row = await session.get(ConnectionRow, connection_id)
            return _connection(row) if row else None

    async def last_event_id(self) -> int:
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

    async def tokens(self, connection_id: str) -> StoredTokens | None:
        """The connection with its tokens decrypted, or None."""
        async with self._sessions() as session:
            row = await session.get(ConnectionRow, connection_id)
            if row is None:
                return None
            return self._stored(row)

    def _stored(self, row: ConnectionRow) -> StoredTokens:
        return StoredTokens(
            connection=_connection(row),
            access_token=self._open(row.id, "access_token", row.access_token),
            refresh_token=self._open_optional(row.id, "refresh_token", row.refresh_token),
            public_token=self._open_optional(row.id, "public_token", row.public_token),
        )

    async def list_connections(
        self,
        *,
        provider: str | None = None,
        end_user_id: str | None = None,
        status: str | None = None,
        claimed: bool | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[Connection]:
        """Connections by id order, filtered, a page at a time (`after` = last id seen).

        `claimed` False keeps the connections without an end user (app market installs).
        """
        query = select(ConnectionRow).order_by(ConnectionRow.id).limit(limit)
        if claimed is not None:
            owner = ConnectionRow.end_user_id
            query = query.where(owner.is_not(None) if claimed else owner.is_(None))
        if provider:
            query = query.where(ConnectionRow.provider == provider)
        if end_user_id:
            query = query.where(ConnectionRow.end_user_id == end_user_id)
        if status:
            query = query.where(ConnectionRow.status == status)
        if after:
            query = query.where(ConnectionRow.id > after)
        async with self._sessions() as session:
            return [_connection(row) for row in await session.scalars(query)]

    async def current_connection(
        self, end_user_id: str, provider: str | None = None
    ) -> Connection | None:
        """The end user's most recently connected store (on `provider`, when given), whatever
        its status: a newer store that needs the merchant must not be swapped for an older one.
        """
        query = (
            select(ConnectionRow)
            .where(ConnectionRow.end_user_id == end_user_id)
            .order_by(ConnectionRow.connected_at.desc(), ConnectionRow.id.desc())
            .limit(1)
        )
        if provider:
            query = query.where(ConnectionRow.provider == provider)
        async with self._sessions() as session:
            row = await session.scalar(query)
            return _connection(row) if row else None

    async def count(self) -> int:
        async with self._sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(ConnectionRow)) or 0)

    async def delete(self, connection_id: str) -> Connection | None:
        """Remove a connection and its tokens; the event log keeps a "disconnected" entry."""

        async def work(session: AsyncSession) -> Connection | None:
            row = await session.get(ConnectionRow, connection_id)
            if row is None:
                return None
            record = _connection(row)
            session.add(_event(row, "disconnected", self.clock(), {}))
            await session.delete(row)
            self._after_commit(session, connection_id)
            return record

        return await self._retrying(work)

    async def save_refresh(self, connection_id: str, grant: Grant, *, used: str) -> Connection:
        """Store a refreshed grant and its event, if the row still holds the refresh token `used`.

        The rotated refresh token is written in the same transaction that records the refresh,
        so a crash cannot keep the old (now dead) refresh token. A row whose refresh token
        changed meanwhile (a reconnect, another refresher) raises `VersionConflict`.
        """

        async def work(session: AsyncSession) -> Connection:
            row = await session.get(ConnectionRow, connection_id, with_for_update=True)
            if row is None or row.refresh_token is None:
                raise VersionConflict(connection_id)
            current = self._open(row.id, "refresh_token", row.refresh_token)
            if not hmac.compare_digest(current, used):
                raise VersionConflict(connection_id)
            now = self.clock()
            # Platforms that do not rotate may leave the refresh token out: keep ours.
            grant_to_store = (
                grant
                if grant.refresh_token
                else _with_refresh_token(grant, current, row.refresh_expires_at)
            )
            # A refresh answers with less than the authorization did (TikTok's callback named
            # the shop's region and locale): keep what it does not replace.
            metadata = {**(row.metadata_ or {}), **grant_to_store.raw}
            self._write_grant(row, replace(grant_to_store, raw=metadata))
            row.version += 1
            row.status = ACTIVE
            row.updated_at = now
            row.last_refreshed_at = now
            row.refresh_failures = 0
            row.last_error = None
            await session.flush()
            session.add(_event(row, "refreshed", now, {"version": row.version}))
            self._after_commit(session, row.id)
            return _connection(row)

        return await self._retrying(work)

    async def record_refresh_failure(
        self, connection_id: str, message: str, *, dead: bool
    ) -> Connection | None:
        """Note a failed refresh; `dead` marks the connection as needing re-authorization."""

        async def work(session: AsyncSession) -> Connection | None:
            row = await session.get(ConnectionRow, connection_id, with_for_update=True)
            if row is None:
                return None
            now = self.clock()
            row.refresh_failures += 1
            row.last_error = message
            row.updated_at = now
            kind = "refresh_failed"
            if dead and row.status != NEEDS_REAUTH:
                row.status = NEEDS_REAUTH
                row.version += 1
                kind = "needs_reauth"
            await session.flush()
            session.add(_event(row, kind, now, {"error": message}))
            self._after_commit(session, row.id)
            return _connection(row)

        return await self._retrying(work)

    async def set_end_user(
        self,
        connection_id: str,
        end_user_id: str | None,
        *,
        expected: str | None = None,
        force: bool = False,
    ) -> Connection | None:
        """Give the connection to `end_user_id` (None: to nobody); None when there is no such one.

        It changes hands only from the end user named `expected` (by default: from nobody), so
        a stale or forged claim cannot take a store from the merchant who has it; `force` skips
        that check (operators at the CLI). `EndUserConflict` when the check fails. Records an
        `end_user_changed` event naming both end users, unless nothing changed.
        """

        async def work(session: AsyncSession) -> Connection | None:
            row = await session.get(ConnectionRow, connection_id, with_for_update=True)
            if row is None:
                return None
            if row.end_user_id == end_user_id:
                return _connection(row)
            if not force and row.end_user_id != expected:
                raise EndUserConflict(connection_id)
            now = self.clock()
            detail = {"from": row.end_user_id, "to": end_user_id}
            row.end_user_id = end_user_id
            row.updated_at = now
            await session.flush()
            session.add(_event(row, "end_user_changed", now, detail))
            self._after_commit(session, row.id)
            return _connection(row)

        return await self._retrying(work)

    async def import_connection(
        self, grant: Grant, account: Account, *, end_user_id: str | None
    ) -> tuple[Connection, bool]:
        """Store a grant obtained elsewhere (AliExpress's Token Query Tool, for one)."""
        return await self.upsert_connection(grant, account, end_user_id=end_user_id)

    async def reencrypt(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-encrypt every token not under the primary key; returns how many rows changed."""
        async with self._sessions() as session:
            ids = list(await session.scalars(select(ConnectionRow.id).order_by(ConnectionRow.id)))
        changed = 0
        for done, connection_id in enumerate(ids, start=1):

            async def work(session: AsyncSession, connection_id: str = connection_id) -> bool:
                row = await session.get(ConnectionRow, connection_id, with_for_update=True)
                if row is None:
                    return False
                fields = [
                    ("access_token", row.access_token),
                    ("refresh_token", row.refresh_token),
                    ("public_token", row.public_token),
                ]
                current = all(v is None or self.keys.is_current(v) for _, v in fields)
                if current:
                    return False
                for name, value in fields:
                    if value is not None:
                        setattr(
                            row, name, self._seal(row.id, name, self._open(row.id, name, value))
                        )
                return True

            changed += await self._retrying(work)
            if progress:
                progress(done, len(ids))
        return changed

    async def key_ids_in_use(self) -> dict[str, int]:
        """How many stored tokens (access, refresh, public) name each encryption key id.

        What `shopkeys keys retire` and `doctor` go by: a key is safe to drop only at zero. Read
        in batches, so a large table is never held in memory at once.
        """
        counts: dict[str, int] = {}
        query = select(
            ConnectionRow.access_token, ConnectionRow.refresh_token, ConnectionRow.public_token
        )
        # Grants waiting for a merchant's confirmation are sealed with the same keys.
        # (Only live ones: an expired link's grant can never be confirmed or read again.)
        waiting = select(AuthSessionRow.pending).where(
            AuthSessionRow.pending.is_not(None), AuthSessionRow.expires_at > self.clock()
        )
        async with self.engine.connect() as connection:
            for source in (query, waiting):
                result = await connection.stream(source.execution_options(yield_per=1000))
                async for row in result:
                    for value in row:
                        key_id = KeyRing.key_id_of(value) if value else None
                        if key_id is not None:
                            counts[key_id] = counts.get(key_id, 0) + 1
        return counts

    # -- connect sessions and state -------------------------------------------------------------

    async def create_auth_session(
        self,
        *,
        provider: str,
        end_user_id: str | None,
        return_to: str | None,
        token_hash: str,
        expires_at: datetime,
    ) -> AuthSession:
        row = AuthSessionRow(
            id=new_id("cs"),
            provider=provider,
            end_user_id=end_user_id,
            return_to=return_to,
            token_hash=token_hash,
            created_at=self.clock(),
            expires_at=expires_at,
        )

        return await self._insert_auth_session(row)

    async def _insert_auth_session(self, row: AuthSessionRow) -> AuthSession:
        async def work(session: AsyncSession) -> AuthSession:
            session.add(row)
            await session.flush()
            return _auth_session(row)

        return await self._transaction(work)

    async def record_install(
        self, *, provider: str, code_hash: str, expires_at: datetime
    ) -> AuthSession | None:
        """Note an app market install's code before it is exchanged; None if it was seen before.

        An install has no state to use up, and a second exchange of a code can disable the token
        the first one gave (Ecwid), so each code may start one exchange: the code's hash takes a
        connect session's unique token column, already consumed.
        """
        now = self.clock()
        row = AuthSessionRow(
            id=new_id("in"),
            provider=provider,
            end_user_id=None,
            return_to=None,
            token_hash=code_hash,
            created_at=now,
            expires_at=expires_at,
            consumed_at=now,
        )
        try:
            return await self._insert_auth_session(row)
        except IntegrityError:
            return None

    async def forget_install(self, session_id: str) -> None:
        """Drop an install's record when its exchange failed, so the merchant can try again."""

        async def work(session: AsyncSession) -> None:
            row = await session.get(AuthSessionRow, session_id)
            if row is not None:
                await session.delete(row)

        await self._transaction(work)

    async def auth_session_by_token(self, token_hash: str) -> AuthSession | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(AuthSessionRow).where(AuthSessionRow.token_hash == token_hash)
            )
            return _auth_session(row) if row else None

    async def auth_session(self, session_id: str) -> AuthSession | None:
        async with self._sessions() as session:
            row = await session.get(AuthSessionRow, session_id)
            return _auth_session(row) if row else None

    async def issue_state(
        self,
        session_id: str,
        state_hash: str,
        expires_at: datetime,
        *,
        browser_hash: str | None = None,
    ) -> None:
        """Replace the session's state: only the newest authorization attempt can complete.

        `browser_hash` binds the attempt to the browser that started it.
        """

        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.id == session_id)
                .values(
                    state_hash=state_hash,
                    state_expires_at=expires_at,
                    # The first browser that opened the link keeps it: a link forwarded to or
                    # opened in another browser cannot take the binding over.
                    browser_hash=func.coalesce(AuthSessionRow.browser_hash, browser_hash),
                )
            )

        await self._transaction(work)

    async def consume_state(self, state_hash: str, *, provider: str | None = None) -> StateCheck:
        """Use a state once: the first caller gets the session, any later one `USED`.

        A state presented on another platform's callback is refused without being used, so the
        real callback can still complete.
        """
        now = self.clock()

        async def work(session: AsyncSession) -> StateCheck:
            row = await session.scalar(
                select(AuthSessionRow).where(AuthSessionRow.state_hash == state_hash)
            )
            if row is None:
                return StateCheck(None, StateProblem.UNKNOWN)
            if row.consumed_at is not None:
                return StateCheck(None, StateProblem.USED)
            if provider is not None and row.provider != provider:
                return StateCheck(None, StateProblem.WRONG_PROVIDER)
            if row.state_expires_at is None:
                # Spent by an attempt that failed after it (see `reopen_auth_session`).
                return StateCheck(None, StateProblem.USED)
            if now >= row.state_expires_at:
                return StateCheck(None, StateProblem.EXPIRED)
            # The conditional update is what makes it single use under concurrency.
            result = await session.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.id == row.id, AuthSessionRow.consumed_at.is_(None))
                .values(consumed_at=now)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return StateCheck(None, StateProblem.USED)
            await session.refresh(row)
            return StateCheck(_auth_session(row), None)

        return await self._transaction(work)

    async def reopen_auth_session(self, session_id: str) -> None:
        """Let a connect link be used again after an attempt that failed on the way.

        The state stays spent (a replay of it is refused as used); opening the link again issues
        a new one. Only a success, a decline or the link's expiry ends a connect session.
        """

        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.id == session_id, AuthSessionRow.connection_id.is_(None))
                .values(consumed_at=None, state_expires_at=None, pending=None)
            )

        await self._transaction(work)

    async def hold_for_confirmation(self, session_id: str, grant: Grant, account: Account) -> None:
        """Keep a callback's grant, encrypted, until the browser that opened the link confirms."""
        payload = json.dumps(
            {
                "grant": {
                    **{k: getattr(grant, k) for k in _GRANT_TEXT_FIELDS},
                    "access_expires_at": _iso(grant.access_expires_at),
                    "refresh_expires_at": _iso(grant.refresh_expires_at),
                    "scopes": list(grant.scopes),
                    "raw": grant.raw,
                },
                "account": {
                    "account_id": account.account_id,
                    "name": account.name,
                    "shops": [_shop_json(shop) for shop in account.shops],
                    "extra": account.extra,
                },
            }
        )
        sealed = self.keys.encrypt(payload, f"auth_sessions:{session_id}:pending")

        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(AuthSessionRow).where(AuthSessionRow.id == session_id).values(pending=sealed)
            )

        await self._transaction(work)

    async def held_grant(self, session_id: str) -> tuple[Grant, Account] | None:
        """The grant waiting for confirmation in this session, without taking it."""
        sealed = await self._live_pending(session_id)
        return self._unseal_pending(session_id, sealed) if sealed is not None else None

    async def take_held_grant(self, session_id: str) -> tuple[Grant, Account] | None:
        """The waiting grant, taken once (None: there is none, or another request took it).

        It is decrypted before it is cleared, so a key problem leaves it waiting.
        """
        sealed = await self._live_pending(session_id)
        if sealed is None:
            return None
        held = self._unseal_pending(session_id, sealed)

        async def work(session: AsyncSession) -> bool:
            result = await session.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.id == session_id, AuthSessionRow.pending == sealed)
                .values(pending=None)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

        return held if await self._transaction(work) else None

    async def _live_pending(self, session_id: str) -> str | None:
        """The sealed grant waiting in a session whose link has not expired."""
        async with self._sessions() as session:
            row = await session.get(AuthSessionRow, session_id)
            if row is None or self.clock() >= row.expires_at:
                return None
            return row.pending

    def _unseal_pending(self, session_id: str, sealed: str) -> tuple[Grant, Account]:
        data = json.loads(self.keys.decrypt(sealed, f"auth_sessions:{session_id}:pending"))
        return _grant_from(data["grant"]), _account_from(data["account"])

    async def complete_auth_session(self, session_id: str, connection_id: str) -> None:
        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.id == session_id)
                .values(connection_id=connection_id)
            )

        await self._transaction(work)

    # -- events ---------------------------------------------------------------------------------

    async def events(self, connection_id: str | None = None, *, limit: int = 50) -> list[Event]:
        """Newest first."""
        query = select(EventRow).order_by(EventRow.id.desc()).limit(limit)
        if connection_id:
            query = query.where(EventRow.connection_id == connection_id)
        async with self._sessions() as session:
            return [_event_record(row) for row in await session.scalars(query)]

    # -- API keys -------------------------------------------------------------------------------

    async def create_api_key(self, *, name: str, scope: str, key_hash: str, prefix: str) -> ApiKey:
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

    async def api_keys(self) -> list[ApiKey]:
        async with self._sessions() as session:
            rows = await session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))
            return [_api_key(row) for row in rows]

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, whether revoked or not."""
        async with self._sessions() as session:
            row = await session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
            return _api_key(row) if row else None

    async def revoke_api_key(self, key_id_or_prefix: str) -> ApiKey | None:
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

    async def revoked_api_key_hashes(self, since: datetime) -> list[str]:
        """The hashes of the keys revoked at or after `since` (a running service forgets them)."""
        query = select(ApiKeyRow.key_hash).where(ApiKeyRow.revoked_at >= since)
        async with self.engine.connect() as connection:
            return list(await connection.scalars(query))


def _lost_insert_race(exc: IntegrityError) -> bool:
    """Whether an insert failed on a unique key, as when another writer inserted the row first."""
    original = exc.orig
    # asyncpg reports the SQLSTATE; sqlite3 names its extended error code.
    return (
        getattr(original, "sqlstate", None) == "23505"
        or getattr(original, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_UNIQUE"
    )


def _shop_json(shop: Any) -> dict[str, Any]:
    return {"id": shop.id, "name": shop.name, "region": shop.region, **shop.extra}


def _with_refresh_token(grant: Grant, token: str | None, expires: datetime | None) -> Grant:
    return replace(
        grant, refresh_token=token, refresh_expires_at=grant.refresh_expires_at or expires
    )


def _event(row: ConnectionRow, kind: str, now: datetime, detail: dict[str, Any]) -> EventRow:
    return EventRow(
        connection_id=row.id, provider=row.provider, kind=kind, detail=detail, created_at=now
    )


def _connection(row: ConnectionRow) -> Connection:
    return Connection(
        id=row.id,
        provider=row.provider,
        account_id=row.account_id,
        account_name=row.account_name,
        end_user_id=row.end_user_id,
        status=row.status,
        access_expires_at=row.access_expires_at,
        refresh_expires_at=row.refresh_expires_at,
        scopes=list(row.scopes or []),
        shops=list(row.shops or []),
        metadata=dict(row.metadata_ or {}),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_refreshed_at=row.last_refreshed_at,
        refresh_failures=row.refresh_failures,
        last_error=row.last_error,
        refreshable=row.refresh_token is not None,
        connected_at=row.connected_at or row.created_at,
    )


def _auth_session(row: AuthSessionRow) -> AuthSession:
    return AuthSession(
        id=row.id,
        provider=row.provider,
        end_user_id=row.end_user_id,
        return_to=row.return_to,
        created_at=row.created_at,
        expires_at=row.expires_at,
        state_expires_at=row.state_expires_at,
        consumed_at=row.consumed_at,
        connection_id=row.connection_id,
        browser_hash=row.browser_hash,
        waiting=row.pending is not None,
    )


def _event_record(row: EventRow) -> Event:
    return Event(
        id=row.id,
        connection_id=row.connection_id,
        provider=row.provider,
        kind=row.kind,
        detail=dict(row.detail or {}),
        created_at=row.created_at,
    )


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scope=row.scope,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


_GRANT_TEXT_FIELDS = (
    "provider",
    "access_token",
    "refresh_token",
    "account_id",
    "account_name",
    "public_token",
)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _grant_from(data: dict[str, Any]) -> Grant:
    def moment(key: str) -> datetime | None:
        value = data.get(key)
        return datetime.fromisoformat(value) if value else None

    return Grant(
        provider=data["provider"],
        access_token=data["access_token"],
        refresh_token=data.get("refresh_token"),
        account_id=data["account_id"],
        account_name=data.get("account_name"),
        public_token=data.get("public_token"),
        access_expires_at=moment("access_expires_at"),
        refresh_expires_at=moment("refresh_expires_at"),
        scopes=list(data.get("scopes") or []),
        raw=dict(data.get("raw") or {}),
    )


def _account_from(data: dict[str, Any]) -> Account:
    shops = [
        Shop(
            id=shop["id"],
            name=shop.get("name"),
            region=shop.get("region"),
            extra={k: v for k, v in shop.items() if k not in ("id", "name", "region")},
        )
        for shop in data.get("shops") or []
    ]
    return Account(
        account_id=data["account_id"],
        name=data.get("name"),
        shops=shops,
        extra=dict(data.get("extra") or {}),
    )
