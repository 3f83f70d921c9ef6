"""The scheduler: refreshes every connection ahead of its expiry, whether or not an app asks.

Each sweep:
1. plans the connections that have no next refresh time (rows stored before it existed);
2. marks `needs_reauth` the connections whose grant has ended (no refresh token or a dead one,
   and an expired access token), so the app hears of it;
3. sends a `reauth_due` event, once per deadline, for grants that end within the warning
   window and that a refresh cannot extend;
4. claims the connections due a refresh in batches (leases, so instances share the work) and
   refreshes them through the token service, at most `concurrency` at once. No database
   connection or row lock is held across a platform's round trip: claim, commit, call, write.

Any number of instances may run it at once on PostgreSQL; on SQLite, one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta

from shopkeys import metrics
from shopkeys.clock import Clock, utc_now
from shopkeys.refresh.outcomes import Outcome
from shopkeys.refresh.service import TokenService
from shopkeys.store.records import StoredTokens
from shopkeys.store.vault import Vault

log = logging.getLogger("shopkeys.scheduler")

#: The default pause between sweeps (`SHOPKEYS_REFRESH_INTERVAL`).
INTERVAL = timedelta(seconds=30)
#: The default warning ahead of a grant's end (`SHOPKEYS_REAUTH_WARNING`).
REAUTH_WARNING = timedelta(days=7)

Progress = Callable[[str, Outcome], None]


@dataclass
class SweepReport:
    """What one sweep did."""

    planned: int = 0
    ended: int = 0
    reauth_due: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)

    @property
    def claimed(self) -> int:
        return sum(self.outcomes.values())


class Scheduler:
    """Refreshes connections ahead of expiry; `run` loops, `sweep` does one pass."""

    def __init__(
        self,
        tokens: TokenService,
        vault: Vault,
        *,
        renewing: Collection[str] = (),
        clock: Clock = utc_now,
        interval: timedelta = INTERVAL,
        concurrency: int = 16,
        reauth_warning: timedelta = REAUTH_WARNING,
    ) -> None:
        """`renewing` names the platforms whose refresh pushes the refresh token's end back."""
        self.tokens = tokens
        self.vault = vault
        self.renewing = frozenset(renewing)
        self.clock = clock
        self.interval = interval
        self.concurrency = concurrency
        self.reauth_warning = reauth_warning

    async def sweep(self, progress: Progress | None = None) -> SweepReport:
        """One pass over everything due now; returns what it did."""
        report = SweepReport()
        leases = self.vault.leases
        report.planned = await leases.plan_unplanned()
        for connection_id in await leases.ended():
            reason = "the grant has ended (no refresh token left that works)"
            await self.vault.connections.record_refresh_failure(
                connection_id, reason, dead=True, kind="needs_reauth"
            )
            report.ended += 1
        for due in await leases.deadlines(self.reauth_warning, renewing=self.renewing):
            if await self.vault.connections.note_reauth_due(due.connection_id, due.deadline):
                report.reauth_due += 1
        seen: set[str] = set()
        slots = asyncio.Semaphore(self.concurrency)

        async def refresh(connection_id: str, read: StoredTokens | None) -> None:
            async with slots:
                try:
                    outcome = await self.tokens.refresh_due(connection_id, read)
                except Exception as exc:  # one connection's surprise must not end the sweep
                    log.exception("refreshing %s failed unexpectedly", connection_id)
                    await self.tokens.record_unforeseen(connection_id, exc)
                    outcome = Outcome.TEMPORARY_FAILURE
                if outcome is not Outcome.REFRESHED:
                    # The claim's lease, unless the write-back released it already.
                    await self.vault.leases.release(connection_id, self.tokens.owner)
            report.outcomes[outcome] += 1
            if progress is not None:
                progress(connection_id, outcome)

        while True:
            until = self.clock() + self.tokens.lease_ttl
            claimed = await leases.claim_due(
                self.tokens.owner, until, 2 * self.concurrency, providers=self.tokens.providers
            )
            fresh = [connection_id for connection_id in claimed if connection_id not in seen]
            metrics.scheduler_sweep(len(fresh))
            for connection_id in set(claimed) - set(fresh):
                # Tried once in this sweep already and still due (it cannot be refreshed now):
                # the next sweep tries again.
                await leases.release(connection_id, self.tokens.owner)
            if not fresh:
                break
            seen.update(fresh)
            # The claimed batch read in one query, under its leases.
            read = await self.vault.connections.tokens_of(fresh)
            await asyncio.gather(*(refresh(id_, read.get(id_)) for id_ in fresh))
        return report

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep every `interval` until `stop` is set; a failed sweep is logged and retried."""
        while not stop.is_set():
            try:
                report = await self.sweep()
                if report.claimed or report.ended or report.reauth_due:
                    log.info(
                        "refresh sweep: %d refreshed, %d failed, %d needs_reauth, "
                        "%d ended, %d reauth_due",
                        report.outcomes[Outcome.REFRESHED],
                        report.outcomes[Outcome.TEMPORARY_FAILURE]
                        + report.outcomes[Outcome.RATE_LIMITED],
                        report.outcomes[Outcome.NEEDS_REAUTH],
                        report.ended,
                        report.reauth_due,
                    )
            except Exception:  # a database hiccup must not stop the scheduler
                log.warning("refresh sweep failed; retrying at the next interval", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval.total_seconds())
