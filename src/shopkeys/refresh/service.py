"""The token service: valid access tokens on demand, each refresh done once across every caller,
process and instance.

One refresh per connection at a time:
- in this process, callers of the same connection join one task (`_inflight`), and a caller
  that goes away (a closed HTTP request) does not cancel it;
- across processes, the task first takes the connection's lease in the database; a process that
  finds the lease held waits for that refresh to land (woken by the change feed or NOTIFY, else
  polling) and hands out its token, or shares its failure.

The path from the platform's answer to the commit runs in that task, which nobody cancels;
shutdown (`aclose`) waits for it. The new grant is written with a compare-and-set on the refresh
token presented, in the transaction that releases the lease, and a failed write is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from enum import Enum

import httpx2
from sqlalchemy.exc import DBAPIError

from shopkeys import metrics
from shopkeys.clock import Clock, utc_now
from shopkeys.errors import (
    AuthorizationDead,
    ProviderError,
    RateLimited,
    TemporaryFailure,
)
from shopkeys.grant import Grant
from shopkeys.providers import get as platform_class
from shopkeys.providers.base import Provider
from shopkeys.refresh.change_feed import REVALIDATE_EVERY, ChangeFollower
from shopkeys.refresh.failures import failure_text, kind_of, shared_failure
from shopkeys.refresh.outcomes import (
    ConnectionNotFound,
    ConnectionUnusable,
    FreshToken,
    NotRefreshable,
    Outcome,
)
from shopkeys.refresh.policy import (
    MIN_LIFE,
    Action,
    Refusal,
    decide,
    has_life,
    hold_until,
    refusal,
    retry_at,
    serve_despite_failure,
)
from shopkeys.refresh.token_cache import CACHE_TTL, TokenCache
from shopkeys.store.records import ACTIVE, Connection, StoredTokens
from shopkeys.store.repository import VersionConflict
from shopkeys.store.vault import Vault

log = logging.getLogger("shopkeys.refresh")

#: How long a call to a platform may take (the `SHOPKEYS_PLATFORM_TIMEOUT` default).
CALL_TIMEOUT = timedelta(seconds=30)
#: A lease outlives the platform call it covers by this much, for the write that follows it.
LEASE_MARGIN = timedelta(seconds=30)
#: How often a caller waiting on another instance's refresh looks again, at most.
WAIT_POLL = 0.25
#: How many times the new grant's write is tried before the error is raised (about a minute).
WRITE_ATTEMPTS = 12

Sleep = Callable[[float], Awaitable[None]]


class Mode(Enum):
    """Why a refresh is asked for, which decides whether it is still needed once it is our turn."""

    #: An app asked for a token: refresh if it has too little life.
    ON_DEMAND = "on_demand"
    #: An operator asked: refresh whatever its life.
    FORCED = "forced"
    #: The scheduler found it due: refresh if it is still due.
    DUE = "due"
    #: The platform refused the access token as expired: refresh unless another caller (in
    #: this process or another) has replaced that token meanwhile.
    REJECTED = "rejected"


def new_owner() -> str:
    """A lease owner name for this process: host, pid and a random part (a restarted process
    with a recycled pid is another owner)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class TokenService:
    """Hands out valid access tokens, refreshing each connection once however many ask."""

    def __init__(
        self,
        vault: Vault,
        providers: Mapping[str, Provider],
        http: httpx2.AsyncClient,
        *,
        clock: Clock = utc_now,
        min_life: timedelta = MIN_LIFE,
        cache_ttl: timedelta = CACHE_TTL,
        owner: str | None = None,
        call_timeout: timedelta = CALL_TIMEOUT,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.vault = vault
        self.providers = providers
        self.http = http
        self.clock = clock
        self.min_life = min_life
        self.owner = owner or new_owner()
        self.call_timeout = call_timeout
        self.lease_ttl = call_timeout + LEASE_MARGIN
        self._sleep = sleep
        self._jitter = jitter
        self.cache = TokenCache(clock=clock, ttl=cache_ttl, min_life=min_life)
        self.follower = ChangeFollower(vault.events, self.cache, clock=clock)
        self._inflight: dict[str, asyncio.Task[tuple[FreshToken | None, Outcome]]] = {}
        # Callers waiting on another instance's refresh, woken when its change lands.
        self._waiting: dict[str, asyncio.Event] = {}
        vault.on_change(self.forget)

    def forget(self, connection_id: str) -> None:
        """Drop the cached token (the vault calls this after every change; so does NOTIFY)."""
        self.cache.forget(connection_id)
        waiting = self._waiting.get(connection_id)
        if waiting is not None:
            waiting.set()

    def heard(self, connection_id: str) -> None:
        """A change announced by another process; "" (listening restarted): forget everything."""
        if connection_id:
            self.forget(connection_id)
        else:
            self.cache.clear()

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
        token, _ = await self._once(connection_id, Mode.ON_DEMAND)
        assert token is not None  # on demand, every outcome without a token raises
        return token

    async def refresh(self, connection_id: str) -> FreshToken:
        """Refresh now, whatever the token's remaining life.

        `NotRefreshable` when there is nothing to refresh: the platform's tokens never expire,
        or the grant came without a usable refresh token.
        """
        token, _ = await self.refresh_with_outcome(connection_id)
        return token

    async def refresh_with_outcome(self, connection_id: str) -> tuple[FreshToken, Outcome]:
        """`refresh`, saying how it ended: a failure that left the stored token usable hands
        that token out with the failure's outcome (the error is on the connection)."""
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
        token, outcome = await self._once(connection_id, Mode.FORCED)
        assert token is not None
        return token, outcome

    async def after_expired(self, connection_id: str, used: str) -> FreshToken:
        """A token to retry with after the platform called `used` expired: the stored one when
        another caller replaced it meanwhile, else a new one from a refresh (joining any in
        flight), so a burst of refused calls costs one refresh."""
        token, _ = await self._once(connection_id, Mode.REJECTED, rejected=used)
        assert token is not None  # like on demand, every outcome without a token raises
        return token

    async def after_refused(
        self, connection_id: str, used: str, error: AuthorizationDead
    ) -> FreshToken:
        """After the platform called the authorization behind `used` dead: the stored token to
        retry with when another caller replaced it meanwhile; otherwise the connection is marked
        `needs_reauth` and `ConnectionUnusable` raised.

        A refresh under way (here or on another instance) is waited for first, and the mark is
        made holding the connection's lease: on platforms that revoke the old token when they
        refresh (SHOPLINE), a call that met the refresh half way must not kill the connection.
        """
        inflight = self._inflight.get(connection_id)
        if inflight is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(inflight)
        while True:
            stored = await self._load(connection_id)
            if stored.access_token != used:
                return FreshToken.of(stored)
            expires = self.clock() + self.lease_ttl
            if await self.vault.leases.acquire(connection_id, self.owner, expires):
                break
            await self._wait_for_other(connection_id, stored.connection.version)
        try:
            stored = await self._load(connection_id)
        except BaseException:
            await asyncio.shield(self.vault.leases.release(connection_id, self.owner))
            raise
        if stored.access_token != used:
            await asyncio.shield(self.vault.leases.release(connection_id, self.owner))
            return FreshToken.of(stored)
        marked = await self.vault.connections.record_refresh_failure(
            connection_id, str(error), dead=True, kind="needs_reauth", lease_owner=self.owner
        )
        raise ConnectionUnusable(
            marked or stored.connection,
            f"{error}: the platform no longer accepts connection {connection_id}'s authorization; "
            "the merchant must connect the store again",
        )

    async def refresh_due(self, connection_id: str, read: StoredTokens | None = None) -> Outcome:
        """Refresh a connection the scheduler found due, if it still is; never raises for the
        platform's failures (they are recorded on the connection), only for a vanished row.

        `read` is the connection as read after the scheduler claimed it (a batch is read in
        one query), which saves reading it again.
        """
        try:
            _, outcome = await self._once(connection_id, Mode.DUE, read)
        except (ConnectionNotFound, ConnectionUnusable):
            return Outcome.SKIPPED
        except AuthorizationDead:
            return Outcome.NEEDS_REAUTH
        except RateLimited:
            return Outcome.RATE_LIMITED
        except ProviderError:
            return Outcome.TEMPORARY_FAILURE
        return outcome

    async def aclose(self) -> None:
        """Wait for the refreshes in flight to store what they got (shutdown calls this).

        Each is bounded by the platform call's timeout and the write's retries.
        """
        pending = list(self._inflight.values())
        if pending:
            await asyncio.wait(pending)

    # -- one refresh per connection ---------------------------------------------------------

    async def _once(
        self,
        connection_id: str,
        mode: Mode,
        read: StoredTokens | None = None,
        *,
        rejected: str | None = None,
    ) -> tuple[FreshToken | None, Outcome]:
        while True:
            task = self._inflight.get(connection_id)
            mine = task is None
            if task is None:
                refreshing = self._refresh(connection_id, mode, read, rejected)
                task = asyncio.get_running_loop().create_task(refreshing)
                self._inflight[connection_id] = task
                task.add_done_callback(lambda _: self._inflight.pop(connection_id, None))
            # Shielded: a caller that goes away must not cancel a refresh others wait on, nor
            # the write of a rotated refresh token.
            token, outcome = await asyncio.shield(task)
            # A joined refresh of another kind may not have done what this caller asked (the
            # scheduler's gives up on a connection another instance holds; an app's refresh
            # skips a token with life left): then it is this caller's turn.
            unmet = (
                token is None
                or (mode is Mode.FORCED and outcome is Outcome.SKIPPED)
                or (mode is Mode.REJECTED and token.access_token == rejected)
            )
            if mine or not unmet:
                return token, outcome

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

    async def _refresh(
        self,
        connection_id: str,
        mode: Mode,
        read: StoredTokens | None = None,
        rejected: str | None = None,
    ) -> tuple[FreshToken | None, Outcome]:
        started = time.perf_counter()
        waited_on: int | None = None
        while True:
            if read is not None and read.connection.status == ACTIVE:
                stored, read = read, None
            else:
                stored = await self._load(connection_id)
            connection = stored.connection
            if _replaced(stored, rejected) or (
                waited_on is not None and connection.version != waited_on
            ):
                # Another caller replaced the rejected token, or another instance's refresh
                # landed while we waited: its token is ours too.
                return self._finish(stored, Outcome.JOINED, started)
            now = self.clock()
            provider = self.providers.get(connection.provider)
            decision = decide(
                connection,
                now,
                platform_refreshes=provider.refreshable if provider is not None else None,
                forced=_wanted_whatever_its_life(mode, connection, now),
                min_life=self.min_life,
            )
            if decision.action is Action.SERVE:
                outcome = Outcome.JOINED if waited_on is not None else Outcome.SKIPPED
                return self._finish(stored, outcome, started)
            if decision.action is Action.NOT_CONFIGURED or provider is None:
                raise ConnectionUnusable(connection, f"{connection.provider} is not configured")
            if decision.action is Action.DEAD:
                why = decision.reason or "the grant cannot be refreshed"
                await self.vault.connections.record_refresh_failure(
                    connection_id, why, dead=True, kind="needs_reauth"
                )
                metrics.refresh_finished(connection.provider, Outcome.NEEDS_REAUTH.value, 0.0)
                raise ConnectionUnusable(connection, f"{why}: connect the store again")
            if connection.blocked_until is not None and connection.blocked_until > now:
                # A failure moments ago (here or on another instance) holds for every caller.
                if mode is Mode.DUE or (
                    mode is Mode.ON_DEMAND and serve_despite_failure(connection, now, dead=False)
                ):
                    return self._finish(stored, Outcome.SKIPPED, started)
                raise shared_failure(connection, now)
            # The scheduler's claim leased it before this read: then the read was already made
            # under the lease, and taking it again and reading again would only cost time.
            claimed = (
                connection.lease_owner == self.owner
                and connection.lease_expires_at is not None
                and connection.lease_expires_at > now + self.call_timeout
            )
            if claimed:
                return await self._refresh_holding(
                    connection_id, provider, mode, started, stored, rejected
                )
            if not await self.vault.leases.acquire(connection_id, self.owner, now + self.lease_ttl):
                metrics.lease_conflict("refresh")
                if mode is Mode.DUE:
                    return None, Outcome.SKIPPED
                waited_on = connection.version
                await self._wait_for_other(connection_id, connection.version)
                continue
            return await self._refresh_holding(
                connection_id, provider, mode, started, rejected=rejected
            )

    async def _wait_for_other(self, connection_id: str, version: int) -> None:
        """Wait until another instance's refresh of the connection lands or its lease lapses."""
        # One waiter per connection in this process: its callers share one task.
        event = self._waiting[connection_id] = asyncio.Event()
        poll = 0.02
        try:
            while True:
                event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), poll)
                poll = min(poll * 2, WAIT_POLL)
                state = await self.vault.leases.state(connection_id)
                if state is None or state.status != ACTIVE or state.version != version:
                    return
                if state.owner is None or (
                    state.expires_at is not None and state.expires_at <= self.clock()
                ):
                    return
        finally:
            self._waiting.pop(connection_id, None)

    async def _refresh_holding(
        self,
        connection_id: str,
        provider: Provider,
        mode: Mode,
        started: float,
        read_under_lease: StoredTokens | None = None,
        rejected: str | None = None,
    ) -> tuple[FreshToken | None, Outcome]:
        """Refresh with the lease held; every way out releases it (the write-back does so in its
        own transaction)."""
        released = False
        try:
            # Read again under the lease (unless that read was made under it already): a
            # refresh that landed between our first read and the lease is not done twice.
            stored = read_under_lease or await self._load(connection_id)
            connection = stored.connection
            now = self.clock()
            if _replaced(stored, rejected):
                return self._finish(stored, Outcome.JOINED, started)
            still_due = _wanted_whatever_its_life(mode, connection, now)
            if not still_due and has_life(connection.access_expires_at, now, self.min_life):
                outcome = Outcome.SKIPPED if mode is Mode.DUE else Outcome.JOINED
                return self._finish(stored, outcome, started)
            assert stored.refresh_token is not None  # the policy refreshes only with one
            token, outcome = await self._call_and_store(stored, provider, started)
            released = True
            return token, outcome
        finally:
            if not released:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.vault.leases.release(connection_id, self.owner))

    async def _call_and_store(
        self, stored: StoredTokens, provider: Provider, started: float
    ) -> tuple[FreshToken | None, Outcome]:
        connection = stored.connection
        used = stored.refresh_token
        assert used is not None
        retried = False
        while True:
            try:
                grant = await self._call(provider, used)
            except AuthorizationDead as exc:
                winner = await self._replaced(connection.id, used)
                if winner is not None:
                    # Another refresh rotated the token we presented: it won, we did not lose.
                    return self._finish(winner, Outcome.JOINED, started)
                await self._record_failure(stored, exc, dead=True)
                metrics.refresh_finished(
                    connection.provider, Outcome.NEEDS_REAUTH.value, _since(started)
                )
                raise
            except ProviderError as exc:
                ambiguous = (
                    isinstance(exc, TemporaryFailure)
                    and not isinstance(exc, RateLimited)
                    and exc.request_sent
                )
                if ambiguous and not retried:
                    # The platform may have rotated the token and the answer got lost: try once
                    # more (the row first, in case another refresh stored a newer token).
                    winner = await self._replaced(connection.id, used)
                    if winner is not None:
                        return self._finish(winner, Outcome.JOINED, started)
                    retried = True
                    until = self.clock() + self.lease_ttl
                    await self.vault.leases.acquire(connection.id, self.owner, until)
                    continue
                failed = await self._record_failure(stored, exc, dead=False)
                outcome = (
                    Outcome.RATE_LIMITED
                    if isinstance(exc, RateLimited)
                    else Outcome.TEMPORARY_FAILURE
                )
                metrics.refresh_finished(connection.provider, outcome.value, _since(started))
                if failed is not None and serve_despite_failure(failed, self.clock(), dead=False):
                    return self.cache.remember(stored), outcome
                raise
            break
        try:
            saved = await self._store(connection, grant, used)
        except VersionConflict:
            # A reconnect replaced the refresh token meanwhile: its tokens stand.
            await self.vault.leases.release(connection.id, self.owner)
            return self._finish(await self._load(connection.id), Outcome.JOINED, started)
        # What was just written, without reading it back.
        fresh = StoredTokens(
            connection=saved,
            access_token=grant.access_token,
            refresh_token=grant.refresh_token or used,
            public_token=grant.public_token or stored.public_token,
        )
        return self._finish(fresh, Outcome.REFRESHED, started)

    async def _call(self, provider: Provider, refresh_token: str) -> Grant:
        """The platform's refresh, bounded by the call timeout whatever the HTTP client's."""
        try:
            return await asyncio.wait_for(
                provider.refresh(self.http, refresh_token), self.call_timeout.total_seconds()
            )
        except TimeoutError:
            raise TemporaryFailure(
                "the platform did not answer in time",
                provider=provider.name,
                endpoint="refresh",
            ) from None

    async def _replaced(self, connection_id: str, used: str) -> StoredTokens | None:
        """The connection, if its refresh token is no longer `used` (another refresh won)."""
        stored = await self.vault.connections.tokens(connection_id)
        if stored is None or stored.connection.status != ACTIVE:
            return None
        if stored.refresh_token is not None and stored.refresh_token != used:
            return stored
        return None

    async def _store(self, read: Connection, grant: Grant, used: str) -> Connection:
        """Write the new grant over the connection as `read` under the lease, retrying database
        failures: a rotated refresh token that is not stored is a lost connection."""
        connection_id = read.id
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return await self.vault.connections.save_refresh(
                    connection_id, grant, used=used, lease_owner=self.owner, read=read
                )
            except (DBAPIError, OSError) as exc:
                if attempt == WRITE_ATTEMPTS:
                    log.error(
                        "could not store the refreshed tokens of %s after %d attempts: %s",
                        connection_id,
                        attempt,
                        type(exc).__name__,
                    )
                    raise
                log.warning(
                    "storing the refreshed tokens of %s failed (%s); retrying",
                    connection_id,
                    type(exc).__name__,
                )
                await self._sleep(min(5.0, 0.1 * 2**attempt))
                # Keep the lease while retrying, so no other instance presents the refresh
                # token that this grant replaced (the database may refuse this too).
                with contextlib.suppress(DBAPIError, OSError):
                    until = self.clock() + self.lease_ttl
                    await self.vault.leases.acquire(connection_id, self.owner, until)
        raise AssertionError("unreachable")

    async def _record_failure(
        self, stored: StoredTokens, exc: ProviderError, *, dead: bool
    ) -> Connection | None:
        connection = stored.connection
        now = self.clock()
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        return await self.vault.connections.record_refresh_failure(
            connection.id,
            failure_text(exc, stored),
            dead=dead,
            kind=kind_of(exc),
            retry_at=None if dead else self._next_try(connection, now, retry_after),
            hold_until=None if dead else hold_until(now, retry_after),
            lease_owner=self.owner,
        )

    async def record_unforeseen(self, connection_id: str, exc: Exception) -> None:
        """Record a refresh that failed in a way nobody classified, with the usual backoff, so
        the connection is not tried again at every sweep. The text names the error's kind only:
        its message may hold secrets."""
        connection = await self.vault.connections.get(connection_id)
        if connection is None:
            return
        await self.vault.connections.record_refresh_failure(
            connection_id,
            f"the refresh failed unexpectedly ({type(exc).__name__})",
            dead=False,
            kind="temporary",
            retry_at=self._next_try(connection, self.clock(), None),
        )

    def _next_try(
        self, connection: Connection, now: datetime, retry_after: float | None
    ) -> datetime:
        """When the scheduler tries again after one more failure of `connection`."""
        return retry_at(
            connection.refresh_failures + 1,
            now,
            access_expires_at=connection.access_expires_at,
            retry_after=retry_after,
            jitter=self._jitter(),
        )

    def _finish(
        self, stored: StoredTokens, outcome: Outcome, started: float
    ) -> tuple[FreshToken, Outcome]:
        metrics.refresh_finished(stored.connection.provider, outcome.value, _since(started))
        return self.cache.remember(stored), outcome


def _wanted_whatever_its_life(mode: Mode, connection: Connection, now: datetime) -> bool:
    """Whether `mode` refreshes the connection even with life left: an operator's refresh, or
    the scheduler's while the connection is still due."""
    if mode is Mode.FORCED or mode is Mode.REJECTED:
        return True
    due = connection.next_refresh_at
    return mode is Mode.DUE and due is not None and due <= now


def _replaced(stored: StoredTokens, rejected: str | None) -> bool:
    """Whether the access token the platform rejected is no longer the stored one."""
    return rejected is not None and stored.access_token != rejected


def _since(started: float) -> float:
    return time.perf_counter() - started
