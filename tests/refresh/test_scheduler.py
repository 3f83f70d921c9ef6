"""The scheduler on a real vault (SQLite and PostgreSQL), with fake platforms and a fake clock.

The platforms here answer every refresh at once and count what they were asked, so the tests
can say exactly which connections were refreshed and how often; time moves only when a test
moves it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from shopkeys.crypto import KeyRing
from shopkeys.errors import ProviderError, RateLimited, RequestRejected, TemporaryFailure
from shopkeys.grant import Account, Grant
from shopkeys.refresh.outcomes import Outcome
from shopkeys.refresh.scheduler import Scheduler
from shopkeys.refresh.service import TokenService
from shopkeys.store import database as db
from shopkeys.store.records import ACTIVE, NEEDS_REAUTH, Connection
from shopkeys.store.tables import ConnectionRow
from shopkeys.store.vault import Vault
from tests.conftest import TEST_KEYS
from tests.store.conftest import FakeClock

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: A one-hour token comes due 12 minutes before its expiry, up to 72 s earlier with jitter.
DUE_AFTER_AN_HOUR_TOKEN = timedelta(minutes=49)


class Platform:
    """A platform's refresh endpoint: answers with a new grant (rotated tokens), or fails.

    Refresh tokens read `refresh:<account>:<n>`, so each call is counted per account. A refresh
    gives a new access token of `life`; the refresh token's deadline is pushed back by
    `refresh_life` only where the platform `renews` it.
    """

    def __init__(
        self,
        name: str,
        clock: FakeClock,
        *,
        life: timedelta = HOUR,
        refresh_life: timedelta = 30 * DAY,
        renews: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.name = name
        self.refreshable = True
        self.clock = clock
        self.life = life
        self.refresh_life = refresh_life
        self.renews = renews
        self.delay = delay
        self.calls: Counter[str] = Counter()
        #: What every call raises while it is set.
        self.failure: ProviderError | None = None
        self.deadlines: dict[str, datetime] = {}

    def grant(self, account: str, n: int = 1) -> Grant:
        now = self.clock()
        deadline = self.deadlines.get(account)
        if deadline is None or self.renews:
            deadline = self.deadlines[account] = now + self.refresh_life
        return Grant(
            provider=self.name,
            access_token=f"access:{account}:{n}",
            refresh_token=f"refresh:{account}:{n}",
            access_expires_at=now + self.life,
            refresh_expires_at=deadline,
            scopes=["read"],
            account_id=account,
        )

    async def refresh(self, http: object, refresh_token: str) -> Grant:
        _, account, n = refresh_token.split(":")
        self.calls[account] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        return self.grant(account, int(n) + 1)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def temporary(name: str = "tiktok_shop") -> TemporaryFailure:
    return TemporaryFailure("the platform failed with HTTP 503", provider=name, endpoint="refresh")


class World:
    """A vault, the platforms, a token service and its scheduler, on one fake clock."""

    def __init__(
        self, vault: Vault, clock: FakeClock, *, owner: str = "instance-a", **options: object
    ) -> None:
        self.vault = vault
        self.clock = clock
        self.platforms = {
            "tiktok_shop": Platform("tiktok_shop", clock),
            "aliexpress": Platform("aliexpress", clock),
            "shopline": Platform("shopline", clock, renews=True),
        }
        self.tokens = TokenService(
            vault,
            self.platforms,  # type: ignore[arg-type]
            None,  # type: ignore[arg-type]
            clock=clock,
            owner=owner,
            jitter=lambda: 0.0,
        )
        self.scheduler = Scheduler(
            self.tokens,
            vault,
            renewing=["shopline"],
            clock=clock,
            **options,  # type: ignore[arg-type]
        )

    def platform(self, name: str) -> Platform:
        return self.platforms[name]

    async def connect(
        self,
        account: str,
        provider: str = "tiktok_shop",
        *,
        life: timedelta | None = HOUR,
        refresh_life: timedelta | None = 30 * DAY,
        refreshable: bool = True,
    ) -> str:
        now = self.clock()
        grant = Grant(
            provider=provider,
            access_token=f"access:{account}:1",
            refresh_token=f"refresh:{account}:1" if refreshable else None,
            access_expires_at=now + life if life is not None else None,
            refresh_expires_at=now + refresh_life
            if refreshable and refresh_life is not None
            else None,
            scopes=["read"],
            account_id=account,
        )
        if refreshable and refresh_life is not None:
            self.platforms[provider].deadlines[account] = now + refresh_life
        stored, _ = await self.vault.connections.upsert(
            grant, Account(account_id=account, name=account), end_user_id=f"user-{account}"
        )
        return stored.id

    async def get(self, connection_id: str) -> Connection:
        connection = await self.vault.connections.get(connection_id)
        assert connection is not None
        return connection

    async def access_token(self, connection_id: str) -> str:
        stored = await self.vault.connections.tokens(connection_id)
        assert stored is not None
        return stored.access_token

    async def kinds(self, connection_id: str) -> list[str]:
        return [e.kind for e in reversed(await self.vault.events.recent(connection_id))]


@pytest.fixture
def world(vault: Vault, clock: FakeClock) -> World:
    return World(vault, clock)


# -- what a sweep refreshes --------------------------------------------------------------------


async def test_a_sweep_refreshes_the_due_connections_only(world: World, clock: FakeClock) -> None:
    due = [await world.connect(f"due-{i}") for i in range(3)]
    later = await world.connect("later", life=10 * HOUR)
    no_refresh = await world.connect("no-refresh", refreshable=False, life=2 * HOUR)
    never = await world.connect("never", "aliexpress", life=None, refreshable=False)

    # Nothing is due yet.
    report = await world.scheduler.sweep()
    assert report.claimed == 0 and world.platform("tiktok_shop").total == 0

    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.REFRESHED: 3})
    assert world.platform("tiktok_shop").calls == Counter({f"due-{i}": 1 for i in range(3)})
    for connection_id in due:
        connection = await world.get(connection_id)
        assert connection.last_refreshed_at == clock.now
        assert connection.access_expires_at == clock.now + HOUR
        assert connection.next_refresh_at is not None and connection.next_refresh_at > clock.now
        assert await world.access_token(connection_id) == f"access:{connection.account_id}:2"
        assert await world.kinds(connection_id) == ["connected", "refreshed"]
    for untouched in (later, no_refresh, never):
        assert (await world.get(untouched)).last_refreshed_at is None
    assert await world.kinds(later) == await world.kinds(never) == ["connected"]
    # The grant without a refresh token ends with its access token: the app is warned instead.
    assert await world.kinds(no_refresh) == ["connected", "reauth_due"]

    # Refreshed connections are not due again until their new token nears its expiry.
    report = await world.scheduler.sweep()
    assert report.claimed == 0
    assert world.platform("tiktok_shop").total == 3
    # No lease is left behind.
    for connection_id in due:
        state = await world.vault.leases.state(connection_id)
        assert state is not None and state.owner is None


async def test_every_platform_is_refreshed_through_its_own_client(
    world: World, clock: FakeClock
) -> None:
    ids = {name: await world.connect(f"on-{name}", name) for name in world.platforms}
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.REFRESHED: 3})
    for name, connection_id in ids.items():
        assert world.platform(name).calls == Counter({f"on-{name}": 1})
        assert await world.access_token(connection_id) == f"access:on-{name}:2"


async def test_more_due_connections_than_one_batch_are_all_refreshed_once(
    vault: Vault, clock: FakeClock
) -> None:
    world = World(vault, clock, concurrency=3)  # batches of 6
    for i in range(20):
        await world.connect(f"c{i:02}")
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    progress: list[tuple[str, Outcome]] = []
    report = await world.scheduler.sweep(lambda cid, outcome: progress.append((cid, outcome)))
    assert report.outcomes == Counter({Outcome.REFRESHED: 20})
    assert len(progress) == 20 and len({cid for cid, _ in progress}) == 20
    assert world.platform("tiktok_shop").calls == Counter({f"c{i:02}": 1 for i in range(20)})


async def test_rows_without_a_next_refresh_are_planned(world: World, clock: FakeClock) -> None:
    soon = await world.connect("soon")
    later = await world.connect("later", life=10 * HOUR)
    not_refreshable = await world.connect("bare", refreshable=False)
    # Rows stored before the refresh engine existed have no next refresh time.
    async with world.vault.engine.begin() as database:
        await database.execute(update(ConnectionRow).values(next_refresh_at=None))

    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    report = await world.scheduler.sweep()
    # Both refreshable rows are planned from when they were connected; the one whose plan is
    # already past is refreshed in the same sweep.
    assert report.planned == 2
    assert report.outcomes == Counter({Outcome.REFRESHED: 1})
    assert world.platform("tiktok_shop").calls == Counter({"soon": 1})
    planned = (await world.get(later)).next_refresh_at
    start = clock.now - DUE_AFTER_AN_HOUR_TOKEN
    # A 10-hour token: a lead of 2 hours, up to 12 minutes more with jitter.
    assert planned is not None
    assert start + 8 * HOUR - timedelta(minutes=12) <= planned <= start + 8 * HOUR
    assert (await world.get(soon)).next_refresh_at is not None
    assert (await world.get(not_refreshable)).next_refresh_at is None

    # Planned once: the next sweep has nothing to plan.
    report = await world.scheduler.sweep()
    assert report.planned == 0


# -- grants that end ---------------------------------------------------------------------------


async def test_a_connection_with_nothing_left_to_refresh_with_is_not_claimed(
    world: World, clock: FakeClock
) -> None:
    connection_id = await world.connect("x", "aliexpress", life=10 * HOUR, refresh_life=2 * HOUR)
    clock.advance(9 * HOUR.total_seconds())
    # Due, but its refresh token is gone: the sweep serves what is left and ends it later.
    reports = []
    for _ in range(3):
        reports.append(await world.scheduler.sweep())
        clock.advance(30)
    assert (await world.get(connection_id)).status == ACTIVE
    assert world.platform("aliexpress").total == 0
    assert [r.claimed for r in reports] == [0, 0, 0]


async def test_ended_grants_are_marked_needs_reauth_with_an_event(
    world: World, clock: FakeClock
) -> None:
    bare = await world.connect("bare", refreshable=False)
    # The refresh token runs out with the access token, and no sweep ran meanwhile.
    lapsed = await world.connect("lapsed", "aliexpress", refresh_life=HOUR)
    alive = await world.connect("alive")
    clock.advance(2 * HOUR.total_seconds())

    report = await world.scheduler.sweep()
    assert report.ended == 2
    for connection_id in (bare, lapsed):
        connection = await world.get(connection_id)
        assert connection.status == NEEDS_REAUTH
        assert connection.next_refresh_at is None
        assert connection.last_error_kind == "needs_reauth"
        assert await world.kinds(connection_id) == ["connected", "needs_reauth"]
        (event,) = [
            e for e in await world.vault.events.recent(connection_id) if e.kind != "connected"
        ]
        assert "the grant has ended" in event.detail["error"]
    # An expired access token with a live refresh token is refreshed, not given up on.
    assert (await world.get(alive)).status == ACTIVE
    assert report.outcomes == Counter({Outcome.REFRESHED: 1})
    assert world.platform("aliexpress").total == 0

    # Marked once.
    report = await world.scheduler.sweep()
    assert report.ended == 0
    assert await world.kinds(bare) == ["connected", "needs_reauth"]


async def test_reauth_due_is_sent_once_per_deadline(world: World, clock: FakeClock) -> None:
    # AliExpress does not push the refresh token's deadline back: its app must be warned.
    ending = await world.connect("ending", "aliexpress", refresh_life=5 * DAY)
    far = await world.connect("far", "aliexpress", refresh_life=30 * DAY)

    report = await world.scheduler.sweep()
    assert report.reauth_due == 1
    events = [e for e in await world.vault.events.recent(ending) if e.kind == "reauth_due"]
    deadline = clock.now + 5 * DAY
    assert [e.detail for e in events] == [{"deadline": deadline.isoformat()}]
    assert (await world.get(ending)).reauth_notified_for == deadline
    assert await world.kinds(far) == ["connected"]

    # Not again for the same deadline: not on the next sweep, nor across refreshes that keep it.
    for _ in range(3):
        clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
        report = await world.scheduler.sweep()
        assert report.reauth_due == 0
    assert world.platform("aliexpress").calls["ending"] == 3
    assert (await world.kinds(ending)).count("reauth_due") == 1

    # A new deadline (the merchant connected again, with a grant that ends soon too) is told.
    world.platform("aliexpress").deadlines.pop("ending")
    await world.connect("ending", "aliexpress", refresh_life=6 * DAY)
    report = await world.scheduler.sweep()
    assert report.reauth_due == 1
    events = [e for e in await world.vault.events.recent(ending) if e.kind == "reauth_due"]
    assert [e.detail["deadline"] for e in events] == [
        (clock.now + 6 * DAY).isoformat(),
        deadline.isoformat(),
    ]
    report = await world.scheduler.sweep()
    assert report.reauth_due == 0


async def test_a_grant_without_refresh_token_is_warned_of_its_access_expiry(
    world: World, clock: FakeClock
) -> None:
    bare = await world.connect("bare", "aliexpress", life=3 * DAY, refreshable=False)
    report = await world.scheduler.sweep()
    assert report.reauth_due == 1
    (event,) = [e for e in await world.vault.events.recent(bare) if e.kind == "reauth_due"]
    assert event.detail == {"deadline": (clock.now + 3 * DAY).isoformat()}
    assert (await world.scheduler.sweep()).reauth_due == 0


async def test_a_renewing_platform_is_warned_only_while_its_refreshes_fail(
    world: World, clock: FakeClock
) -> None:
    shopline = world.platform("shopline")
    shopline.refresh_life = 2 * DAY
    renewing = await world.connect("renewing", "shopline", refresh_life=2 * DAY)

    # Its refreshes push the deadline back: no warning while they work.
    for _ in range(3):
        clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
        report = await world.scheduler.sweep()
        assert report.reauth_due == 0
        assert report.outcomes == Counter({Outcome.REFRESHED: 1})
    connection = await world.get(renewing)
    assert connection.refresh_expires_at == clock.now + 2 * DAY
    assert "reauth_due" not in await world.kinds(renewing)

    # Once they fail, the deadline stands and the app must hear of it (once).
    shopline.failure = temporary("shopline")
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.TEMPORARY_FAILURE: 1})
    report = await world.scheduler.sweep()
    assert report.reauth_due == 1
    deadline = (await world.get(renewing)).refresh_expires_at
    assert deadline is not None
    (event,) = [e for e in await world.vault.events.recent(renewing) if e.kind == "reauth_due"]
    assert event.detail == {"deadline": deadline.isoformat()}
    clock.advance(60)
    assert (await world.scheduler.sweep()).reauth_due == 0


# -- leases and instances ----------------------------------------------------------------------


async def test_a_connection_leased_by_another_owner_is_left_alone(
    world: World, clock: FakeClock
) -> None:
    held = await world.connect("held")
    await world.connect("free")
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    assert await world.vault.leases.acquire(held, "instance-b", clock.now + timedelta(minutes=2))

    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.REFRESHED: 1})
    assert world.platform("tiktok_shop").calls == Counter({"free": 1})
    state = await world.vault.leases.state(held)
    assert state is not None and state.owner == "instance-b"  # not taken, not released

    # Held until its lease lapses (its holder died): then it is ours to refresh.
    clock.advance(90)
    assert (await world.scheduler.sweep()).claimed == 0
    clock.advance(60)
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.REFRESHED: 1})
    assert world.platform("tiktok_shop").calls == Counter({"free": 1, "held": 1})
    state = await world.vault.leases.state(held)
    assert state is not None and state.owner is None


async def test_a_lease_taken_after_the_claim_is_respected(world: World, clock: FakeClock) -> None:
    """Another instance's on-demand refresh holding the lease between our claim and our call."""
    connection_id = await world.connect("contended")
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    claimed = await world.vault.leases.claim_due(
        "instance-a", clock.now + HOUR, 10, providers=world.platforms
    )
    assert claimed == [connection_id]
    # The claim lapses and another instance takes the lease before we call.
    clock.advance(HOUR.total_seconds() + 1)
    assert await world.vault.leases.acquire(connection_id, "instance-b", clock.now + HOUR)
    assert await world.tokens.refresh_due(connection_id) is Outcome.SKIPPED
    assert world.platform("tiktok_shop").total == 0


async def _second_instance(
    database_url: str, tmp_path: Path, clock: FakeClock, owner: str
) -> tuple[AsyncEngine, Vault]:
    engine = db.create_engine(db.database_url(database_url, tmp_path))
    return engine, Vault(engine, KeyRing.parse(TEST_KEYS), clock=clock)


async def test_two_instances_sweeping_at_once_refresh_each_connection_once(
    vault: Vault, clock: FakeClock, database_url: str, tmp_path: Path
) -> None:
    """Two schedulers with their own owners and database pools share the platforms' counters."""
    a = World(vault, clock, owner="instance-a", concurrency=4)
    other_engine, other_vault = await _second_instance(database_url, tmp_path, clock, "b")
    try:
        b = World(other_vault, clock, owner="instance-b", concurrency=4)
        b.platforms = a.platforms
        b.tokens.providers = a.platforms  # type: ignore[assignment]
        for platform in a.platforms.values():
            platform.delay = 0.005  # calls overlap the other instance's claims
        ids = [await a.connect(f"c{i:02}", ["tiktok_shop", "aliexpress"][i % 2]) for i in range(40)]

        shares: list[list[int]] = []
        for round_ in range(1, 4):
            clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
            reports = await asyncio.gather(a.scheduler.sweep(), b.scheduler.sweep())
            refreshed = sum(r.outcomes[Outcome.REFRESHED] for r in reports)
            shares.append([r.outcomes[Outcome.REFRESHED] for r in reports])
            calls = a.platform("tiktok_shop").calls + a.platform("aliexpress").calls
            # Every connection refreshed in each round, none twice.
            assert refreshed == 40, [r.outcomes for r in reports]
            assert calls == Counter({f"c{i:02}": round_ for i in range(40)})
            for report in reports:
                assert set(report.outcomes) <= {Outcome.REFRESHED, Outcome.SKIPPED}
        # Both instances took part: the work was shared, not done by one while the other idled.
        assert all(sum(share) > 0 for share in zip(*shares, strict=True)), shares
        for connection_id in ids:
            connection = await a.get(connection_id)
            assert connection.status == ACTIVE and connection.refresh_failures == 0
            assert (await a.kinds(connection_id)).count("refreshed") == 3
    finally:
        await other_engine.dispose()


# -- running ---------------------------------------------------------------------------------


async def test_run_sweeps_until_stopped_and_stops_promptly(world: World, clock: FakeClock) -> None:
    scheduler = Scheduler(world.tokens, world.vault, clock=clock, interval=timedelta(hours=1))
    connection_id = await world.connect("due")
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    for _ in range(1000):
        if (await world.get(connection_id)).last_refreshed_at is not None:
            break
        await asyncio.sleep(0.005)
    assert world.platform("tiktok_shop").total == 1
    # Waiting out its (hour-long) interval, it ends as soon as it is told to.
    await asyncio.sleep(0.05)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, timeout=1.0)

    # Told before it starts, it does not sweep at all.
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    await asyncio.wait_for(scheduler.run(stop), timeout=1.0)
    assert world.platform("tiktok_shop").total == 1


async def test_a_failed_sweep_is_logged_and_retried(
    world: World,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler = Scheduler(world.tokens, world.vault, clock=clock, interval=timedelta(seconds=0.01))
    sweeps = 0
    real = scheduler.sweep

    async def flaky(*args: object) -> object:
        nonlocal sweeps
        sweeps += 1
        if sweeps == 1:
            raise OSError("the database went away")
        return await real()

    monkeypatch.setattr(scheduler, "sweep", flaky)
    await world.connect("due")
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="shopkeys.scheduler"):
        task = asyncio.create_task(scheduler.run(stop))
        for _ in range(1000):
            if world.platform("tiktok_shop").total:
                break
            await asyncio.sleep(0.005)
        stop.set()
        await asyncio.wait_for(task, timeout=5.0)  # after the sweep under way
    assert world.platform("tiktok_shop").total == 1
    assert any("sweep failed" in r.getMessage() for r in caplog.records)


# -- failing platforms -------------------------------------------------------------------------


async def test_a_failing_platform_is_retried_with_backoff_while_the_token_works(
    world: World, clock: FakeClock
) -> None:
    tiktok = world.platform("tiktok_shop")
    tiktok.failure = temporary()
    connection_id = await world.connect("flaky")
    expires = clock.now + HOUR
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())

    # The first failure: the answer may have been lost after a rotation, so the service asks
    # once more at once; then 30 s of backoff, the hold of 5 s for on-demand callers.
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.TEMPORARY_FAILURE: 1})
    assert tiktok.calls["flaky"] == 2
    connection = await world.get(connection_id)
    assert connection.status == ACTIVE
    assert connection.refresh_failures == 1
    assert connection.last_error_kind == "temporary"
    assert connection.next_refresh_at == clock.now + timedelta(seconds=30)
    assert connection.blocked_until == clock.now + timedelta(seconds=5)
    (failed,) = [e for e in await world.vault.events.recent(connection_id) if e.kind != "connected"]
    assert failed.kind == "refresh_failed"
    assert failed.detail["retry_at"] == (clock.now + timedelta(seconds=30)).isoformat()
    state = await world.vault.leases.state(connection_id)
    assert state is not None and state.owner is None
    # The app still gets the token, which has life left.
    app = TokenService(world.vault, world.platforms, None, clock=clock)  # type: ignore[arg-type]
    assert (await app.fresh_token(connection_id)).access_token == "access:flaky:1"

    # Not before the backoff is over.
    clock.advance(20)
    assert (await world.scheduler.sweep()).claimed == 0

    # Each failure waits twice as long, but never past halfway to the token's expiry.
    waits = []
    for _ in range(5):
        connection = await world.get(connection_id)
        assert connection.next_refresh_at is not None
        clock.now = connection.next_refresh_at
        report = await world.scheduler.sweep()
        assert report.outcomes == Counter({Outcome.TEMPORARY_FAILURE: 1})
        after = await world.get(connection_id)
        assert after.next_refresh_at is not None
        waits.append((after.next_refresh_at - clock.now).total_seconds())
        assert after.next_refresh_at <= clock.now + (expires - clock.now) / 2
        assert after.status == ACTIVE
    # 60 s, 120 s, then 240 s would pass halfway to the expiry (450 s away): halves from there.
    assert waits == [60, 120, 225, 112.5, 56.25]
    assert (await world.get(connection_id)).refresh_failures == 6

    # The platform recovers: the next try refreshes and forgets the failures.
    tiktok.failure = None
    clock.now = (await world.get(connection_id)).next_refresh_at  # type: ignore[assignment]
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.REFRESHED: 1})
    connection = await world.get(connection_id)
    assert connection.refresh_failures == 0 and connection.last_error is None
    assert connection.status == ACTIVE and connection.access_expires_at == clock.now + HOUR


async def test_a_platform_failing_past_the_tokens_expiry_keeps_the_connection(
    world: World, clock: FakeClock
) -> None:
    """Temporary failures never end a grant, even once the access token has run out."""
    world.platform("aliexpress").failure = temporary("aliexpress")
    connection_id = await world.connect("down", "aliexpress")
    for _ in range(40):
        clock.advance(120)
        await world.scheduler.sweep()
    connection = await world.get(connection_id)
    assert connection.access_expires_at is not None and connection.access_expires_at < clock.now
    assert connection.status == ACTIVE
    assert connection.next_refresh_at is not None
    assert "needs_reauth" not in await world.kinds(connection_id)
    world.platform("aliexpress").failure = None
    clock.advance(3600)
    assert (await world.scheduler.sweep()).outcomes == Counter({Outcome.REFRESHED: 1})


async def test_rate_limits_wait_out_retry_after_with_one_call(
    world: World, clock: FakeClock
) -> None:
    tiktok = world.platform("tiktok_shop")
    tiktok.failure = RateLimited(
        "too many requests", provider="tiktok_shop", endpoint="refresh", retry_after=600
    )
    connection_id = await world.connect("busy")
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.RATE_LIMITED: 1})
    assert tiktok.calls["busy"] == 1  # a 429 is no lost answer: not asked again at once
    connection = await world.get(connection_id)
    assert connection.last_error_kind == "rate_limited"
    assert connection.blocked_until == clock.now + timedelta(seconds=600)
    assert connection.next_refresh_at == clock.now + timedelta(seconds=600)
    tiktok.failure = None
    clock.advance(599)
    assert (await world.scheduler.sweep()).claimed == 0
    clock.advance(1)
    assert (await world.scheduler.sweep()).outcomes == Counter({Outcome.REFRESHED: 1})


async def test_a_rejected_request_is_backed_off_not_ended(world: World, clock: FakeClock) -> None:
    world.platform("tiktok_shop").failure = RequestRejected(
        "invalid app key", provider="tiktok_shop", endpoint="refresh"
    )
    connection_id = await world.connect("misconfigured")
    clock.advance(DUE_AFTER_AN_HOUR_TOKEN.total_seconds())
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.TEMPORARY_FAILURE: 1})
    assert world.platform("tiktok_shop").calls["misconfigured"] == 1  # not ambiguous
    connection = await world.get(connection_id)
    assert connection.status == ACTIVE and connection.last_error_kind == "rejected"
    assert connection.next_refresh_at == clock.now + timedelta(seconds=30)


async def test_a_long_outage_stays_backed_off(
    world: World, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    tiktok = world.platform("tiktok_shop")
    tiktok.failure = RequestRejected("invalid app key", provider="tiktok_shop", endpoint="refresh")
    connection_id = await world.connect("misconfigured", life=30 * DAY)
    # 42 failures in a row so far (at the one-hour ceiling, a day and a half of them).
    async with world.vault.engine.begin() as database:
        await database.execute(update(ConnectionRow).values(refresh_failures=42))
    for failures in (43, 44):
        clock.now = (await world.get(connection_id)).next_refresh_at  # type: ignore[assignment]
        await world.scheduler.sweep()
        connection = await world.get(connection_id)
        assert connection.refresh_failures == failures
        assert connection.next_refresh_at == clock.now + timedelta(hours=1)
    assert tiktok.calls["misconfigured"] == 2
    assert not any("failed unexpectedly" in r.getMessage() for r in caplog.records)
