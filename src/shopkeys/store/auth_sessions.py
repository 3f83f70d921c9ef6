"""Connect sessions at rest: the links, their single-use state, app market installs, held grants.

Tokens and states are stored only as hashes; a grant held for a merchant's confirmation is sealed
with the key ring like a connection's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shopkeys.grant import Account, Grant
from shopkeys.store.grant_json import grant_and_account_from, grant_and_account_json
from shopkeys.store.ids import new_id
from shopkeys.store.records import AuthSession
from shopkeys.store.repository import Repository
from shopkeys.store.tables import AuthSessionRow

TABLE = "auth_sessions"


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


class AuthSessionRepository(Repository):
    """Storage of connect sessions, their states, installs and grants waiting for confirmation."""

    async def create(
        self,
        *,
        provider: str,
        end_user_id: str | None,
        return_to: str | None,
        token_hash: str,
        expires_at: datetime,
    ) -> AuthSession:
        """A new connect session, found again by the hash of its link's token."""
        row = AuthSessionRow(
            id=new_id("cs"),
            provider=provider,
            end_user_id=end_user_id,
            return_to=return_to,
            token_hash=token_hash,
            created_at=self.clock(),
            expires_at=expires_at,
        )

        return await self._insert(row)

    async def _insert(self, row: AuthSessionRow) -> AuthSession:
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
            return await self._insert(row)
        except IntegrityError:
            return None

    async def forget_install(self, session_id: str) -> None:
        """Drop an install's record when its exchange failed, so the merchant can try again."""

        async def work(session: AsyncSession) -> None:
            row = await session.get(AuthSessionRow, session_id)
            if row is not None:
                await session.delete(row)

        await self._transaction(work)

    async def by_token(self, token_hash: str) -> AuthSession | None:
        """The session whose link's token has this hash, or None."""
        async with self._session() as session:
            row = await session.scalar(
                select(AuthSessionRow).where(AuthSessionRow.token_hash == token_hash)
            )
            return _auth_session(row) if row else None

    async def get(self, session_id: str) -> AuthSession | None:
        """The session with this id, or None."""
        async with self._session() as session:
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
                # Spent by an attempt that failed after it (see `reopen`).
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

    async def reopen(self, session_id: str) -> None:
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
        payload = grant_and_account_json(grant, account)
        sealed = self._seal(TABLE, session_id, "pending", payload)

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
        async with self._session() as session:
            row = await session.get(AuthSessionRow, session_id)
            if row is None or self.clock() >= row.expires_at:
                return None
            return row.pending

    def _unseal_pending(self, session_id: str, sealed: str) -> tuple[Grant, Account]:
        return grant_and_account_from(self._unseal(TABLE, session_id, "pending", sealed))

    async def key_ids_in_use(self) -> dict[str, int]:
        """How many grants waiting for confirmation name each encryption key id.

        Only live ones: an expired link's grant can never be confirmed or read again.
        """
        return await self._count_key_ids(
            select(AuthSessionRow.pending).where(
                AuthSessionRow.pending.is_not(None), AuthSessionRow.expires_at > self.clock()
            )
        )

    async def complete(self, session_id: str, connection_id: str) -> None:
        """Mark the session done: it connected `connection_id`."""

        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.id == session_id)
                .values(connection_id=connection_id)
            )

        await self._transaction(work)


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
