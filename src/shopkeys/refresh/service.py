"""The token service: valid access tokens on demand, refreshed at most once at a time per
connection in this process.

It does the I/O around the policy's decisions: reading the vault, calling the platform, storing
the rotated refresh token with the refresh, and recording failures (a dead grant marks the
connection `needs_reauth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Mapping
from datetime import timedelta

import httpx2

from shopkeys.clock import Clock, utc_now
from shopkeys.errors import AuthorizationDead, ProviderError
from shopkeys.providers import get as platform_class
from shopkeys.providers.base import Provider
from shopkeys.redact import redact
from shopkeys.refresh.change_feed import REVALIDATE_EVERY, ChangeFollower
from shopkeys.refresh.outcomes import (
    ConnectionNotFound,
    ConnectionUnusable,
    FreshToken,
    NotRefreshable,
)
from shopkeys.refresh.policy import (
    MIN_LIFE,
    Action,
    Refusal,
    decide,
    has_life,
    refusal,
    serve_despite_failure,
)
from shopkeys.refresh.token_cache import CACHE_TTL, TokenCache
from shopkeys.store.records import ACTIVE, StoredTokens
from shopkeys.store.repository import VersionConflict
from shopkeys.store.vault import Vault


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
        self.cache = TokenCache(clock=clock, ttl=cache_ttl, min_life=min_life)
        self.follower = ChangeFollower(vault.events, self.cache, clock=clock)
        # Weak values: a lock lives while someone holds or waits for it, so the map stays as
        # small as the number of refreshes in flight.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        vault.on_change(self.forget)

    def forget(self, connection_id: str) -> None:
        """Drop the cached token (the vault calls this after every change)."""
        self.cache.forget(connection_id)

    def cached(self, connection_id: str) -> FreshToken | None:
        """The cached token if it is still good to hand out: the hot path, no I/O."""
        return self.cache.get(connection_id)

    async def watch_from_now(self) -> None:
        """Start following the vault's change feed at its newest event."""
        await self.follower.watch_from_now()

    async def revalidate(self) -> int:
        """Drop the cached tokens of connections changed since the last call; returns how many."""
        return await self.follower.revalidate()

    async def keep_revalidated(self, every: timedelta = REVALIDATE_EVERY) -> None:
        """Revalidate forever (run as a background task by the service)."""
        await self.follower.keep_revalidated(every)

    async def fresh_token(self, connection_id: str) -> FreshToken:
        """A valid access token for the connection, refreshed first if it has too little life."""
        token = self.cached(connection_id)
        if token is not None:
            return token
        stored = await self._load(connection_id)
        if has_life(stored.connection.access_expires_at, self.clock(), self.min_life):
            return self.cache.remember(stored)
        return await self._refresh(connection_id, forced=False)

    async def refresh(self, connection_id: str) -> FreshToken:
        """Refresh now, whatever the token's remaining life.

        `NotRefreshable` when there is nothing to refresh: the platform's tokens never expire,
        or the grant came without a usable refresh token.
        """
        stored = await self._load(connection_id)
        # The class, not the configured client: the platform's tokens never expire whether or
        # not its app is configured here.
        platform = platform_class(stored.connection.provider)
        refused = refusal(stored.connection, platform_refreshes=platform.refreshable)
        if refused is Refusal.NEVER_EXPIRES:
            raise NotRefreshable(
                stored.connection,
                f"{platform.display_name} access tokens do not expire: there is nothing to refresh",
            )
        if refused is Refusal.NO_REFRESH_TOKEN:
            raise NotRefreshable(
                stored.connection,
                f"connection {connection_id} has no refresh token (the platform issued none that "
                "works): connect the store again before its access token expires",
            )
        return await self._refresh(connection_id, forced=True)

    async def _load(self, connection_id: str) -> StoredTokens:
        stored = await self.vault.connections.tokens(connection_id)
        if stored is None:
            raise ConnectionNotFound(f"no connection {connection_id}")
        if stored.connection.status != ACTIVE:
            raise ConnectionUnusable(
                stored.connection,
                f"connection {connection_id} is {stored.connection.status}: "
                "the merchant must connect the store again",
            )
        return stored

    def _lock(self, connection_id: str) -> asyncio.Lock:
        lock = self._locks.get(connection_id)
        if lock is None:
            lock = self._locks[connection_id] = asyncio.Lock()
        return lock

    async def _refresh(self, connection_id: str, *, forced: bool) -> FreshToken:
        async with self._lock(connection_id):
            # Whoever held the lock before us may have refreshed already: decide afresh.
            stored = await self._load(connection_id)
            connection = stored.connection
            now = self.clock()
            provider = self.providers.get(connection.provider)
            decision = decide(
                connection,
                now,
                platform_refreshes=provider.refreshable if provider is not None else None,
                forced=forced,
                min_life=self.min_life,
            )
            if decision.action is Action.SERVE:
                return self.cache.remember(stored)
            if decision.action is Action.NOT_CONFIGURED or provider is None:
                raise ConnectionUnusable(connection, f"{connection.provider} is not configured")
            if decision.action is Action.DEAD:
                why = decision.reason or "the grant cannot be refreshed"
                await self.vault.connections.record_refresh_failure(connection_id, why, dead=True)
                raise ConnectionUnusable(connection, f"{why}: connect the store again")
            assert stored.refresh_token is not None  # the policy refreshes only with one
            try:
                grant = await provider.refresh(self.http, stored.refresh_token)
            except ProviderError as exc:
                dead = isinstance(exc, AuthorizationDead)
                await self.vault.connections.record_refresh_failure(
                    connection_id, _failure_text(exc, stored), dead=dead
                )
                if serve_despite_failure(connection, now, dead=dead):
                    return self.cache.remember(stored)
                raise
            # A conflict means another writer (a reconnect, another process) stored newer
            # tokens first; theirs are as good as ours.
            with contextlib.suppress(VersionConflict):
                await self.vault.connections.save_refresh(
                    connection_id, grant, used=stored.refresh_token
                )
            return self.cache.remember(await self._load(connection_id))


def _failure_text(exc: ProviderError, stored: StoredTokens) -> str:
    """What a failed refresh stores and shows: the error, without the connection's tokens.

    The provider has cleaned its own message of what it sent; this also catches the access token,
    which a refresh does not send but the platform knows and may echo back.
    """
    return redact(str(exc), known=(stored.refresh_token, stored.access_token))
