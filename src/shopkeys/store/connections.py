"""Connections at rest: one row per authorized store, its tokens sealed with the key ring.

Every change writes the event that records it in its own transaction, and every change to a
connection's tokens or status bumps its `version` and notifies the listeners after the commit
(the token cache), so nothing serves a token that has been replaced.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shopkeys.grant import Account, Grant
from shopkeys.store.grant_json import shop_json
from shopkeys.store.ids import new_id
from shopkeys.store.records import ACTIVE, NEEDS_REAUTH, REVOKED, Connection, StoredTokens
from shopkeys.store.repository import Repository, VersionConflict
from shopkeys.store.tables import ConnectionRow

TABLE = "connections"
#: The longest account name the connections table holds.
ACCOUNT_NAME_LENGTH = 255


class EndUserConflict(Exception):
    """The connection belongs to another end user than the one a change expected."""


class ConnectionRepository(Repository):
    """Storage of connections and their tokens."""

    def _seal_token(self, row_id: str, field_name: str, value: str) -> str:
        return self._seal(TABLE, row_id, field_name, value)

    def _open_token(self, row_id: str, field_name: str, value: str) -> str:
        return self._unseal(TABLE, row_id, field_name, value)

    def _seal_optional(self, row_id: str, field_name: str, value: str | None) -> str | None:
        return self._seal_token(row_id, field_name, value) if value else None

    def _open_optional(self, row_id: str, field_name: str, value: str | None) -> str | None:
        return self._open_token(row_id, field_name, value) if value else None

    def _write_grant(self, row: ConnectionRow, grant: Grant) -> None:
        for name, value in self._grant_values(row.id, grant).items():
            setattr(row, name, value)

    def _grant_values(self, connection_id: str, grant: Grant) -> dict[str, Any]:
        """The columns a new grant sets: its tokens sealed, its expiries, and a fresh start for
        the refresh engine with the next refresh planned now, so no refreshable connection is
        ever without one."""
        values: dict[str, Any] = {
            "access_token": self._seal_token(connection_id, "access_token", grant.access_token),
            "refresh_token": self._seal_optional(
                connection_id, "refresh_token", grant.refresh_token
            ),
            "access_expires_at": grant.access_expires_at,
            "refresh_expires_at": grant.refresh_expires_at,
            "scopes": list(grant.scopes),
            "metadata_": dict(grant.raw),
            "next_refresh_at": (
                self.plan.next_refresh(self.clock(), grant.access_expires_at)
                if grant.refresh_token
                else None
            ),
            "refresh_failures": 0,
            "last_error": None,
            "last_error_kind": None,
            "blocked_until": None,
        }
        if grant.public_token:
            # A public token comes only with some authorizations and cannot be fetched again:
            # a grant without one (a refresh, an import, a reinstall) keeps the stored one.
            values["public_token"] = self._seal_token(
                connection_id, "public_token", grant.public_token
            )
        return values

    async def upsert(
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
            await self._write_lock(session)
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
        row.shops = [shop_json(shop) for shop in account.shops]
        row.updated_at = now
        row.reauth_notified_for = None
        await session.flush()
        detail: dict[str, Any] = {"version": row.version}
        if source:
            detail["source"] = source
        await self._event(session, row, "connected" if created else "reconnected", now, detail)
        if moved_from is not None:
            moved = {"from": moved_from, "to": end_user_id}
            await self._event(session, row, "moved", now, moved)
        record = connection_record(row)
        self._after_commit(session, row.id)
        return record, created

    async def import_grant(
        self, grant: Grant, account: Account, *, end_user_id: str | None
    ) -> tuple[Connection, bool]:
        """Store a grant obtained elsewhere (AliExpress's Token Query Tool, for one)."""
        return await self.upsert(grant, account, end_user_id=end_user_id)

    async def get(self, connection_id: str) -> Connection | None:
        """The connection without its tokens, or None."""
        async with self._session() as session:
            row = await session.get(ConnectionRow, connection_id)
            return connection_record(row) if row else None

    async def tokens(self, connection_id: str) -> StoredTokens | None:
        """The connection with its tokens decrypted, or None."""
        async with self._session() as session:
            row = await session.get(ConnectionRow, connection_id)
            return self._stored(row) if row is not None else None

    async def tokens_of(self, connection_ids: Collection[str]) -> dict[str, StoredTokens]:
        """`tokens` of many connections in one query (those that exist)."""
        if not connection_ids:
            return {}
        query = select(ConnectionRow).where(ConnectionRow.id.in_(list(connection_ids)))
        async with self._session() as session:
            return {row.id: self._stored(row) for row in await session.scalars(query)}

    def _stored(self, row: ConnectionRow) -> StoredTokens:
        return StoredTokens(
            connection=connection_record(row),
            access_token=self._open_token(row.id, "access_token", row.access_token),
            refresh_token=self._open_optional(row.id, "refresh_token", row.refresh_token),
            public_token=self._open_optional(row.id, "public_token", row.public_token),
        )

    async def find(
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
        async with self._session() as session:
            return [connection_record(row) for row in await session.scalars(query)]

    async def current(self, end_user_id: str, provider: str | None = None) -> Connection | None:
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
        async with self._session() as session:
            row = await session.scalar(query)
            return connection_record(row) if row else None

    async def count(self) -> int:
        """How many connections there are."""
        async with self._session() as session:
            return int(await session.scalar(select(func.count()).select_from(ConnectionRow)) or 0)

    async def delete(self, connection_id: str) -> Connection | None:
        """Remove a connection and its tokens; the event log keeps a "disconnected" entry."""

        async def work(session: AsyncSession) -> Connection | None:
            row = await session.get(ConnectionRow, connection_id)
            if row is None:
                return None
            record = connection_record(row)
            await self._event(session, row, "disconnected", self.clock(), {})
            await session.delete(row)
            self._after_commit(session, connection_id)
            return record

        return await self._retrying(work)

    async def save_refresh(
        self,
        connection_id: str,
        grant: Grant,
        *,
        used: str,
        lease_owner: str | None = None,
        read: Connection | None = None,
    ) -> Connection:
        """Store a refreshed grant and its event, if the row still holds the refresh token `used`.

        The rotated refresh token is written in the same transaction that records the refresh
        and releases `lease_owner`'s lease, so a crash cannot keep the old (now dead) refresh
        token. A row whose refresh token changed meanwhile (a reconnect, another refresher)
        raises `VersionConflict`, and nothing is written.

        `read` is the connection as read before the refresh (under the lease): the write is
        then one compare-and-set on its version, which moves with every change of tokens or
        status. Only if that finds the row changed is it read again and judged by its refresh
        token (a connection marked dead meanwhile by a stale decision gets its new grant).
        """
        if read is not None:
            saved = await self._retrying(
                lambda session: self._save_over(session, read, grant, used, lease_owner)
            )
            if saved is not None:
                return saved

        async def work(session: AsyncSession) -> Connection:
            row = await session.get(ConnectionRow, connection_id, with_for_update=True)
            if row is None or row.refresh_token is None:
                raise VersionConflict(connection_id)
            current = self._open_token(row.id, "refresh_token", row.refresh_token)
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
            _release(row, lease_owner)
            await session.flush()
            await self._event(session, row, "refreshed", now, {"version": row.version})
            self._after_commit(session, row.id)
            return connection_record(row)

        return await self._retrying(work)

    async def _save_over(
        self,
        session: AsyncSession,
        read: Connection,
        grant: Grant,
        used: str,
        lease_owner: str | None,
    ) -> Connection | None:
        """`save_refresh` as one conditional UPDATE on `read.version`; None if the row moved."""
        now = self.clock()
        if not grant.refresh_token:
            # Platforms that do not rotate may leave the refresh token out: keep ours.
            grant = _with_refresh_token(grant, used, read.refresh_expires_at)
        # A refresh answers with less than the authorization did: keep what it does not replace.
        grant = replace(grant, raw={**read.metadata, **grant.raw})
        values = self._grant_values(read.id, grant)
        version = read.version + 1
        values.update(version=version, status=ACTIVE, updated_at=now, last_refreshed_at=now)
        if lease_owner is not None:
            mine = ConnectionRow.lease_owner == lease_owner
            values["lease_owner"] = case((mine, None), else_=ConnectionRow.lease_owner)
            values["lease_expires_at"] = case((mine, None), else_=ConnectionRow.lease_expires_at)
        statement = (
            update(ConnectionRow)
            .where(ConnectionRow.id == read.id, ConnectionRow.version == read.version)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        result = await session.execute(statement)
        if getattr(result, "rowcount", 0) != 1:
            return None
        saved = replace(
            read,
            status=ACTIVE,
            version=version,
            access_expires_at=grant.access_expires_at,
            refresh_expires_at=grant.refresh_expires_at,
            scopes=list(grant.scopes),
            metadata=dict(grant.raw),
            updated_at=now,
            last_refreshed_at=now,
            refresh_failures=0,
            last_error=None,
            last_error_kind=None,
            blocked_until=None,
            next_refresh_at=values["next_refresh_at"],
            refreshable=True,
            lease_owner=None if read.lease_owner == lease_owner else read.lease_owner,
            lease_expires_at=None if read.lease_owner == lease_owner else read.lease_expires_at,
        )
        await self._event(session, saved, "refreshed", now, {"version": version})
        self._after_commit(session, read.id)
        return saved

    async def record_refresh_failure(
        self,
        connection_id: str,
        message: str,
        *,
        dead: bool,
        kind: str | None = None,
        retry_at: datetime | None = None,
        hold_until: datetime | None = None,
        lease_owner: str | None = None,
    ) -> Connection | None:
        """Note a failed refresh; `dead` marks the connection as needing re-authorization.

        `kind` names the failure for the callers that share it, `retry_at` is when the
        scheduler tries again, and until `hold_until` no caller asks the platform again (a
        `Retry-After`). `lease_owner`'s lease is released in the same transaction.
        """

        async def work(session: AsyncSession) -> Connection | None:
            row = await session.get(ConnectionRow, connection_id, with_for_update=True)
            if row is None:
                return None
            now = self.clock()
            row.refresh_failures += 1
            row.last_error = message
            row.last_error_kind = kind
            row.updated_at = now
            row.blocked_until = hold_until
            if retry_at is not None:
                row.next_refresh_at = retry_at
            _release(row, lease_owner)
            event = "refresh_failed"
            detail: dict[str, Any] = {"error": message}
            if kind:
                detail["kind"] = kind
            if dead:
                row.next_refresh_at = None
                if row.status != NEEDS_REAUTH:
                    row.status = NEEDS_REAUTH
                    row.version += 1
                    event = "needs_reauth"
            elif retry_at is not None:
                detail["retry_at"] = retry_at.isoformat()
            await session.flush()
            await self._event(session, row, event, now, detail)
            self._after_commit(session, row.id)
            return connection_record(row)

        return await self._retrying(work)

    async def mark_revoked(self, connection_id: str, reason: str) -> Connection | None:
        """The platform says the merchant took the authorization back (an uninstall, a
        deauthorization): the connection is `revoked`, with an event; None when there is none."""

        async def work(session: AsyncSession) -> Connection | None:
            row = await session.get(ConnectionRow, connection_id, with_for_update=True)
            if row is None:
                return None
            now = self.clock()
            if not revoke(row, now):
                return connection_record(row)
            await session.flush()
            await self._event(session, row, "revoked", now, {"reason": reason})
            self._after_commit(session, row.id)
            return connection_record(row)

        return await self._retrying(work)

    async def note(self, connection_id: str, kind: str, detail: dict[str, Any]) -> bool:
        """Record an operator's action on the connection (`token_revealed`) in its event log,
        changing nothing else; False when there is no such connection. `detail` holds no token.
        """

        async def work(session: AsyncSession) -> bool:
            row = await session.get(ConnectionRow, connection_id)
            if row is None:
                return False
            await self._event(session, row, kind, self.clock(), detail)
            return True

        return await self._transaction(work)

    async def note_reauth_due(self, connection_id: str, deadline: datetime) -> bool:
        """Record a `reauth_due` event for `deadline`, once per deadline; True when recorded.

        Several instances may find the same deadline: the first records it, the others see
        that it was recorded and do nothing.
        """

        async def work(session: AsyncSession) -> bool:
            row = await session.get(ConnectionRow, connection_id, with_for_update=True)
            if row is None or not note_deadline(row, deadline):
                return False
            now = self.clock()
            await session.flush()
            detail = {"deadline": deadline.isoformat()}
            await self._event(session, row, "reauth_due", now, detail)
            return True

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
                return connection_record(row)
            if not force and row.end_user_id != expected:
                raise EndUserConflict(connection_id)
            now = self.clock()
            detail = {"from": row.end_user_id, "to": end_user_id}
            row.end_user_id = end_user_id
            row.updated_at = now
            await session.flush()
            await self._event(session, row, "end_user_changed", now, detail)
            self._after_commit(session, row.id)
            return connection_record(row)

        return await self._retrying(work)

    async def reencrypt(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Re-encrypt every token not under the primary key; returns how many rows changed."""
        async with self._session() as session:
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
                        plain = self._open_token(row.id, name, value)
                        setattr(row, name, self._seal_token(row.id, name, plain))
                return True

            changed += await self._retrying(work)
            if progress:
                progress(done, len(ids))
        return changed

    async def key_ids_in_use(self) -> dict[str, int]:
        """How many stored tokens (access, refresh, public) name each encryption key id."""
        return await self._count_key_ids(
            select(
                ConnectionRow.access_token, ConnectionRow.refresh_token, ConnectionRow.public_token
            )
        )


def _lost_insert_race(exc: IntegrityError) -> bool:
    """Whether an insert failed on a unique key, as when another writer inserted the row first."""
    original = exc.orig
    # asyncpg reports the SQLSTATE; sqlite3 names its extended error code.
    return (
        getattr(original, "sqlstate", None) == "23505"
        or getattr(original, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_UNIQUE"
    )


def revoke(row: ConnectionRow, now: datetime) -> bool:
    """Mark `row` revoked (nothing left to refresh); False when it already was. The caller
    records the `revoked` event in the same transaction."""
    if row.status == REVOKED:
        return False
    row.status = REVOKED
    row.version += 1
    row.updated_at = now
    row.next_refresh_at = None
    return True


def note_deadline(row: ConnectionRow, deadline: datetime) -> bool:
    """Remember that the app is told of `deadline`; False when it already was, or the
    connection is not active. The caller records the `reauth_due` event."""
    if row.status != ACTIVE or row.reauth_notified_for == deadline:
        return False
    row.reauth_notified_for = deadline
    return True


def _release(row: ConnectionRow, owner: str | None) -> None:
    """Release `owner`'s lease on `row` if it still holds it (a lapsed one may have passed on)."""
    if owner is not None and row.lease_owner == owner:
        row.lease_owner = None
        row.lease_expires_at = None


def _with_refresh_token(grant: Grant, token: str | None, expires: datetime | None) -> Grant:
    return replace(
        grant, refresh_token=token, refresh_expires_at=grant.refresh_expires_at or expires
    )


def connection_record(row: ConnectionRow) -> Connection:
    """The record of a stored row: everything but its tokens."""
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
        next_refresh_at=row.next_refresh_at,
        last_error_kind=row.last_error_kind,
        blocked_until=row.blocked_until,
        reauth_notified_for=row.reauth_notified_for,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
    )
