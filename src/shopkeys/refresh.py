"""Valid access tokens on demand: the hot path's cache and the single in-process refresh.

The multi-instance refresh engine (leases, scheduling ahead of expiry) is a separate piece; this
module is what it will build on: one refresh per connection at a time in this process, the rotated
refresh token written with the refresh, and dead authorizations marked `needs_reauth`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx2

from shopkeys.clock import Clock, utc_now
from shopkeys.errors import AuthorizationDead, ProviderError, ShopkeysError
from shopkeys.providers import get as platform_class
from shopkeys.providers.base import Provider
from shopkeys.redact import redact
from shopkeys.store.records import ACTIVE, Connection, StoredTokens
from shopkeys.store.vault import Vault, VersionConflict

log = logging.getLogger("shopkeys.refresh")

#: A token with less life than this is refreshed before it is handed out.
MIN_LIFE = timedelta(minutes=5)
#: How often the cache compares its entries' versions with the database, so a change made by
#: another process (the CLI, a second instance) is seen within this time.
REVALIDATE_EVERY = timedelta(seconds=5)
#: How long a gap in the event ids is asked for again before it counts as a rolled-back write.
HOLE_PATIENCE = timedelta(minutes=2)
#: A safety net should revalidation stop: no entry is served longer than this (plus jitter, so
#: entries loaded together do not all expire together).
CACHE_TTL = timedelta(minutes=10)


class ConnectionNotFound(ShopkeysError):
    """No connection has that id."""


class NotRefreshable(ShopkeysError):
    """An explicit refresh of a connection that has nothing to refresh."""

    def __init__(self, connection: Connection, message: str) -> None:
        super().__init__(message)
        self.connection = connection


class ConnectionUnusable(ShopkeysError):
    """The connection exists but cannot give a token (it needs re-authorization, or was revoked)."""

    def __init__(self, connection: Connection, message: str) -> None:
        super().__init__(message)
        self.connection = connection


@dataclass(frozen=True, slots=True)
class FreshToken:
    """An access token with enough life left, and what an app needs to use it."""

    connection_id: str
    provider: str
    account_id: str
    access_token: str = field(repr=False)
    expires_at: datetime | None
    public_token: str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """What apps receive: the token endpoint's body, and `shopkeys token --format json`."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "provider": self.provider,
            "account_id": self.account_id,
            "connection_id": self.connection_id,
        }
        if self.public_token:
            body["public_token"] = self.public_token
        return body


@dataclass(slots=True)
class _Cached:
    token: FreshToken
    stale_at: datetime


class TokenService:
    """Hands out valid access tokens, refreshing at most once at a time per connection."""

    def __init__(
        self,
        vault: Vault,
        providers: Mapping[str, Provider],
        http: httpx2.AsyncClient,
        *,
        clock: Clock = utc_now,
        min_life: timedelta = MIN_LIFE,
        cache_ttl: timedelta = CACHE_TTL,
    ) -> None:
        self.vault = vault
        self.providers = providers
        self.http = http
        self.clock = clock
        self.min_life = min_life
        self.cache_ttl = cache_ttl
        self._cache: dict[str, _Cached] = {}
        # Weak values: a lock lives while someone holds or waits for it, so the map stays as
        # small as the number of refreshes in flight.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._watermark: int | None = None
        self._holes: dict[int, datetime] = {}
        vault.on_change(self.forget)

    def forget(self, connection_id: str) -> None:
        """Drop the cached token (the vault calls this after every change)."""
        self._cache.pop(connection_id, None)

    def cached(self, connection_id: str) -> FreshToken | None:
        """The cached token if it is still good to hand out: the hot path, no I/O."""
        entry = self._cache.get(connection_id)
        if entry is None:
            return None
        now = self.clock()
        if now >= entry.stale_at or not self._has_life(entry.token.expires_at, now):
            return None
        return entry.token

    async def watch_from_now(self) -> None:
        """Start following the vault's change feed at its newest event."""
        self._watermark = await self.vault.last_event_id()
        self._holes.clear()

    async def revalidate(self) -> int:
        """Drop every cached token whose connection changed since the last call; returns how many.

        Reads only the events written since then, so its cost follows the rate of changes, not
        the number of connections. On PostgreSQL a transaction can commit an event id lower than
        one already seen; such gaps ("holes") are asked for again until they fill or age out.
        """
        if self._watermark is None:
            await self.watch_from_now()
            dropped = len(self._cache)
            self._cache.clear()
            return dropped
        changes = await self.vault.changes_since(self._watermark, also=self._holes)
        now = self.clock()
        seen = {event_id for event_id, _ in changes}
        newest = max(seen, default=self._watermark)
        for gap in range(self._watermark + 1, newest):
            if gap not in seen:
                self._holes.setdefault(gap, now)
        self._holes = {
            gap: since
            for gap, since in self._holes.items()
            if gap not in seen and now - since < HOLE_PATIENCE
        }
        self._watermark = max(self._watermark, newest)
        dropped = 0
        for _, connection_id in changes:
            if connection_id is not None and connection_id in self._cache:
                self.forget(connection_id)
                dropped += 1
        return dropped

    async def keep_revalidated(self, every: timedelta = REVALIDATE_EVERY) -> None:
        """Revalidate forever (run as a background task by the service)."""
        while True:
            await asyncio.sleep(every.total_seconds())
            try:
                await self.revalidate()
            except Exception:  # a database hiccup must not end the loop
                log.warning("token cache revalidation failed; retrying", exc_info=True)

    async def fresh_token(self, connection_id: str) -> FreshToken:
        """A valid access token for the connection, refreshed first if it has too little life."""
        token = self.cached(connection_id)
        if token is not None:
            return token
        stored = await self._load(connection_id)
        if self._has_life(stored.connection.access_expires_at, self.clock()):
            return self._remember(stored)
        return await self._refresh(connection_id, only_if_needed=True)

    async def refresh(self, connection_id: str) -> FreshToken:
        """Refresh now, whatever the token's remaining life.

        `NotRefreshable` when there is nothing to refresh: the platform's tokens never expire,
        or the grant came without a usable refresh token.
        """
        stored = await self._load(connection_id)
        # The class, not the configured client: the platform's tokens never expire whether or
        # not its app is configured here.
        platform = platform_class(stored.connection.provider)
        if not platform.refreshable:
            raise NotRefreshable(
                stored.connection,
                f"{platform.display_name} access tokens do not expire: there is nothing to refresh",
            )
        if stored.refresh_token is None:
            raise NotRefreshable(
                stored.connection,
                f"connection {connection_id} has no refresh token (the platform issued none that "
                "works): connect the store again before its access token expires",
            )
        return await self._refresh(connection_id, only_if_needed=False)

    async def _load(self, connection_id: str) -> StoredTokens:
        stored = await self.vault.tokens(connection_id)
        if stored is None:
            raise ConnectionNotFound(f"no connection {connection_id}")
        if stored.connection.status != ACTIVE:
            raise ConnectionUnusable(
                stored.connection,
                f"connection {connection_id} is {stored.connection.status}: "
                "the merchant must connect the store again",
            )
        return stored

    def _has_life(self, expires_at: datetime | None, now: datetime) -> bool:
        return expires_at is None or expires_at - now > self.min_life

    def _remember(self, stored: StoredTokens) -> FreshToken:
        connection = stored.connection
        token = FreshToken(
            connection_id=connection.id,
            provider=connection.provider,
            account_id=connection.account_id,
            access_token=stored.access_token,
            expires_at=connection.access_expires_at,
            public_token=stored.public_token,
        )
        jitter = self.cache_ttl * random.uniform(0, 0.5)  # spreads expiry; not a secret
        self._cache[connection.id] = _Cached(token, self.clock() + self.cache_ttl + jitter)
        return token

    async def _refresh(self, connection_id: str, *, only_if_needed: bool) -> FreshToken:
        lock = self._locks.get(connection_id)
        if lock is None:
            lock = self._locks[connection_id] = asyncio.Lock()
        async with lock:
            # Whoever held the lock before us may have refreshed already.
            stored = await self._load(connection_id)
            now = self.clock()
            if only_if_needed and self._has_life(stored.connection.access_expires_at, now):
                return self._remember(stored)
            provider = self.providers.get(stored.connection.provider)
            if provider is None:
                raise ConnectionUnusable(
                    stored.connection, f"{stored.connection.provider} is not configured"
                )
            if not provider.refreshable:
                return self._remember(stored)
            still_valid = _still_valid(stored, now)
            if stored.refresh_token is None or _expired(stored.connection.refresh_expires_at, now):
                if still_valid:
                    return self._remember(stored)
                why = (
                    "the grant has no refresh token"
                    if stored.refresh_token is None
                    else "the refresh token has expired"
                )
                await self.vault.record_refresh_failure(connection_id, why, dead=True)
                raise ConnectionUnusable(stored.connection, f"{why}: connect the store again")
            try:
                grant = await provider.refresh(self.http, stored.refresh_token)
            except AuthorizationDead as exc:
                await self.vault.record_refresh_failure(
                    connection_id, _failure_text(exc, stored), dead=True
                )
                raise
            except ProviderError as exc:
                await self.vault.record_refresh_failure(
                    connection_id, _failure_text(exc, stored), dead=False
                )
                if still_valid:
                    # A token with a little life left beats an error; the next call retries.
                    return self._remember(stored)
                raise
            # A conflict means another writer (a reconnect, another process) stored newer
            # tokens first; theirs are as good as ours.
            with contextlib.suppress(VersionConflict):
                await self.vault.save_refresh(connection_id, grant, used=stored.refresh_token)
            return self._remember(await self._load(connection_id))


def _failure_text(exc: ProviderError, stored: StoredTokens) -> str:
    """What a failed refresh stores and shows: the error, without the connection's tokens.

    The provider has cleaned its own message of what it sent; this also catches the access token,
    which a refresh does not send but the platform knows and may echo back.
    """
    return redact(str(exc), known=(stored.refresh_token, stored.access_token))


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now


def _still_valid(stored: StoredTokens, now: datetime) -> bool:
    return not _expired(stored.connection.access_expires_at, now)
