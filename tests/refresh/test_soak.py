"""Thirty simulated days of the scheduler keeping tokens of a few hours alive, nobody asking.

The vault, the real provider clients and the in-process simulators share one fake clock.
Connections are made through the simulators' authorization pages at seeded random times; the
scheduler sweeps on a five-minute grid; an app looks at every connection at seeded random
moments. At every one of them each token must still have more than the hot path's `MIN_LIFE`
left (so handing it out takes no refresh), and the platform must accept it.

A sweep costs a few database round trips, and 30 days hold 8,640 five-minute grid points: too
many for a test to run. Between two grid points where a connection comes due, every sweep finds
nothing to do (no connection due, none ended, no deadline near: the lifetimes here put no
refresh token's end within the warning window), so the simulation jumps from one such grid
point to the next. That the skipped sweeps are empty is checked, not assumed: every sweep run
must claim exactly the connections due, and a sweep is also run at a seeded random sample of
grid points where nothing is due, where it must do nothing at all.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shopkeys.crypto import KeyRing
from shopkeys.refresh.outcomes import Outcome
from shopkeys.refresh.policy import MIN_LIFE
from shopkeys.refresh.scheduler import Scheduler
from shopkeys.refresh.service import TokenService
from shopkeys.refresh_plan import RefreshPlan
from shopkeys.sandbox.core import Lifetimes
from shopkeys.store.records import ACTIVE, Connection
from shopkeys.store.vault import Vault
from tests.conftest import TEST_KEYS
from tests.refresh.test_faults import PLATFORMS, Sandbox
from tests.store.conftest import FakeClock

HOUR = 3600.0
DAY = 24 * HOUR
DAYS = 30
GRID = timedelta(minutes=5)
#: Tokens of a few hours on every platform that expires them. SHOPLINE's refresh token dies a
#: day after its access token, as on the platform (each refresh renews it); AliExpress's lives
#: 60 days and TikTok Shop's a century, as theirs do.
LIFETIMES = {
    "tiktok_shop": Lifetimes(code=600, access=8 * HOUR, refresh=None),
    "shopline": Lifetimes(code=600, access=8 * HOUR, refresh=8 * HOUR + DAY),
    "aliexpress": Lifetimes(code=1800, access=10 * HOUR, refresh=60 * DAY),
}
#: A store of each platform connects at a random time in the 30 days. (A refresh and its sweep
#: cost some tens of milliseconds of database round trips: these counts, a few hundred
#: refreshes, keep the run within seconds.)
#: Moments an app looks at every connection.
SAMPLES = 30
#: Grid points where nothing is due at which a sweep is run anyway, to show it does nothing.
IDLE_SWEEPS = 12


@pytest.fixture
async def sandbox(clock: FakeClock) -> AsyncIterator[Sandbox]:
    box = Sandbox(clock, seed=30, lifetimes=LIFETIMES)
    try:
        yield box
    finally:
        await box.http.aclose()


def grid_at_or_after(moment: datetime, start: datetime) -> datetime:
    steps = -((start - moment) // GRID)  # ceiling division
    return start + GRID * max(steps, 0)


async def test_thirty_days_without_an_expired_token(
    engine: AsyncEngine, clock: FakeClock, sandbox: Sandbox
) -> None:
    began = time.perf_counter()
    rng = random.Random(30)
    start = clock.now
    end = start + timedelta(days=DAYS)
    vault = Vault(
        engine, KeyRing.parse(TEST_KEYS), clock=clock, plan=RefreshPlan(random=rng.random)
    )
    tokens = TokenService(
        vault, sandbox.providers, sandbox.http, clock=clock, owner="scheduler", jitter=rng.random
    )
    scheduler = Scheduler(tokens, vault, renewing=["shopline"], clock=clock)
    # The app's own service: it shares nothing with the scheduler's but the vault.
    app = TokenService(vault, sandbox.providers, sandbox.http, clock=clock, owner="app")

    plan = random.Random(2030)
    creations = sorted(
        (start + timedelta(seconds=plan.uniform(0, DAYS * DAY)), name) for name in PLATFORMS
    )
    samples = sorted(start + timedelta(seconds=plan.uniform(0, DAYS * DAY)) for _ in range(SAMPLES))
    idle = sorted(
        grid_at_or_after(start + timedelta(seconds=plan.uniform(0, DAYS * DAY)), start)
        for _ in range(IDLE_SWEEPS)
    )

    ids: dict[str, str] = {}
    outcomes: Counter[Outcome] = Counter()
    least_life = timedelta.max
    sweeps = idle_swept = sampled = 0

    seen: list[Connection] = []

    async def check(now: datetime) -> datetime | None:
        """Every connection alive, planned, and with life left; the earliest next refresh."""
        nonlocal least_life, seen
        seen = await vault.connections.find(limit=100)
        assert len(seen) == len(ids)
        earliest: datetime | None = None
        for connection in seen:
            assert connection.status == ACTIVE, (connection.provider, connection.last_error)
            assert connection.refresh_failures == 0, connection.last_error
            # Every refreshable active connection has its next refresh planned, before expiry.
            assert connection.next_refresh_at is not None
            assert connection.access_expires_at is not None
            assert connection.next_refresh_at < connection.access_expires_at
            left = connection.access_expires_at - now
            least_life = min(least_life, left)
            assert left > MIN_LIFE, (connection.provider, left)
            if earliest is None or connection.next_refresh_at < earliest:
                earliest = connection.next_refresh_at
        return earliest

    async def sweep(now: datetime, *, idle_expected: bool) -> None:
        nonlocal sweeps, least_life
        # Nobody but the scheduler writes: the rows are as the last check read them.
        due = 0
        for connection in seen:
            assert connection.next_refresh_at and connection.access_expires_at
            if connection.next_refresh_at <= now:
                due += 1
            # A token has the least life left just before the sweep that refreshes it.
            left = connection.access_expires_at - now
            least_life = min(least_life, left)
            assert left > MIN_LIFE, (connection.provider, left)
        assert not (idle_expected and due)
        report = await scheduler.sweep()
        sweeps += 1
        # Exactly the due connections were claimed, all refreshed; nothing else happened.
        assert report.outcomes == (Counter({Outcome.REFRESHED: due}) if due else Counter())
        assert (report.planned, report.ended, report.reauth_due) == (0, 0, 0)
        outcomes.update(report.outcomes)

    async def sample(now: datetime) -> None:
        """An app asks for every token: each is handed out as stored, with no refresh."""
        for connection_id, name in ids.items():
            stored = await vault.connections.tokens(connection_id)
            assert stored is not None and stored.connection.access_expires_at is not None
            assert stored.connection.access_expires_at - now > MIN_LIFE
            asked = sum(sandbox.transport.refreshes.values())
            token = await app.fresh_token(connection_id)
            assert sum(sandbox.transport.refreshes.values()) == asked  # no refresh on demand
            assert token.access_token == stored.access_token
            assert sandbox.token_alive(name, stored), name

    next_due: datetime | None = None
    while True:
        moments = [
            *(when for when, _ in creations[:1]),
            *samples[:1],
            *idle[:1],
            *([grid_at_or_after(next_due, start)] if next_due else []),
        ]
        now = min(moments, default=end)
        if now >= end:
            break
        assert now >= clock.now
        clock.now = now
        if creations and creations[0][0] == now:
            _, name = creations.pop(0)
            ids[await sandbox.connect(vault, name, f"store-{len(ids):02}")] = name
        if samples and samples[0] == now:
            samples.pop(0)
            await sample(now)
            sampled += 1
        if idle and idle[0] == now:
            idle.pop(0)
            if next_due is None or next_due > now:
                await sweep(now, idle_expected=True)
                idle_swept += 1
        if next_due is not None and grid_at_or_after(next_due, start) == now:
            await sweep(now, idle_expected=False)
        next_due = await check(now)

    # Nothing lost: every connection active, refreshed all along, its tokens good on the platform.
    assert len(ids) == len(PLATFORMS) and sampled == SAMPLES
    assert outcomes == Counter({Outcome.REFRESHED: outcomes[Outcome.REFRESHED]})
    for connection_id, name in ids.items():
        stored = await vault.connections.tokens(connection_id)
        assert stored is not None and stored.connection.status == ACTIVE
        assert sandbox.token_alive(name, stored) and sandbox.refresh_token_alive(name, stored)
        kinds = Counter(e.kind for e in await vault.events.recent(connection_id, limit=1000))
        assert set(kinds) == {"connected", "refreshed"}, kinds
        # Refreshed every 0.78 to 0.8 lifetimes (the lead and its jitter), the next sweep up to
        # a grid step later, from when it was connected to the end.
        life = LIFETIMES[name].access
        connected = stored.connection.connected_at
        assert life is not None and connected is not None
        lived = (end - connected).total_seconds()
        fewest = lived / (0.8 * life + GRID.total_seconds())
        assert int(fewest) <= kinds["refreshed"] <= lived / (0.78 * life) + 1, kinds
    # Refreshed a whole lead ahead: a fifth of the shortest lifetime, less a grid step at most.
    shortest = min(lifetimes.access or 0 for lifetimes in LIFETIMES.values())
    assert least_life >= timedelta(seconds=0.2 * shortest) - GRID
    assert sum(sandbox.transport.refreshes.values()) == outcomes[Outcome.REFRESHED]
    print(
        f"soak: {len(ids)} connections, {outcomes[Outcome.REFRESHED]} refreshes, {sweeps} sweeps "
        f"({idle_swept} idle), {sampled} samples, least life {least_life}, "
        f"{time.perf_counter() - began:.1f} s"
    )
