"""A fake platform and records for the refresh package's tests; the clock is `FakeClock`."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

from shopkeys.errors import ProviderError
from shopkeys.grant import Grant
from shopkeys.store.records import ACTIVE, Connection, StoredTokens
from tests.store import conftest as store_fixtures
from tests.store.conftest import START

ACCESS = "access-1-" + "a" * 24
REFRESH = "refresh-1-" + "r" * 24


def connection(
    *,
    access_life: timedelta | None = timedelta(hours=1),
    refresh_life: timedelta | None = timedelta(days=30),
    refreshable: bool = True,
    now: datetime = START,
    connection_id: str = "con_1",
) -> Connection:
    """A stored connection whose tokens have these lifetimes left at `now` (None: no expiry)."""
    return Connection(
        id=connection_id,
        provider="shopline",
        account_id="acct-1",
        account_name="Acme Store",
        end_user_id=None,
        status=ACTIVE,
        access_expires_at=now + access_life if access_life is not None else None,
        refresh_expires_at=now + refresh_life if refresh_life is not None else None,
        scopes=[],
        shops=[],
        metadata={},
        version=1,
        created_at=now,
        updated_at=now,
        last_refreshed_at=None,
        refresh_failures=0,
        last_error=None,
        refreshable=refreshable,
    )


def stored(record: Connection, access: str = ACCESS) -> StoredTokens:
    return StoredTokens(
        connection=record,
        access_token=access,
        refresh_token=REFRESH if record.refreshable else None,
    )


class FakeProvider:
    """A platform's refresh, scripted: each call takes the next answer (a grant or an error).

    `hold` keeps every call waiting until it is set, so concurrent callers pile up behind it.
    """

    def __init__(self, *answers: Grant | ProviderError, refreshable: bool = True) -> None:
        self.name = "shopline"
        self.refreshable = refreshable
        self.answers = list(answers)
        self.calls: list[str] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def refresh(self, http: object, refresh_token: str) -> Grant:
        self.calls.append(refresh_token)
        await self.hold.wait()
        answer = self.answers.pop(0)
        if isinstance(answer, ProviderError):
            raise answer
        return answer


def refreshed(
    grant: Grant, now: datetime, *, access: str, refresh: str | None, life: timedelta
) -> Grant:
    """`grant` as a platform's refresh at `now` returns it: new tokens, a new access lifetime."""
    return replace(
        grant,
        access_token=access,
        refresh_token=refresh,
        access_expires_at=now + life,
        refresh_expires_at=now + timedelta(days=30) if refresh else None,
        raw={},
    )


# The vault on each database, with the store tests' fake clock (the fixtures are theirs).
clock = store_fixtures.clock
engine = store_fixtures.engine
vault = store_fixtures.vault
