"""The refresh engine against the sandbox's platforms, in-process, while they misbehave.

The real provider clients talk HTTP to the simulators through an ASGI transport; the vault, the
providers and the simulators share one fake clock. The simulators inject their faults (5xx, 429
with Retry-After, platform error codes, HTML where JSON is due, dropped connections, answers
slower than the service's call timeout) at seeded random rates, and the scheduler sweeps while
the clock moves.

What a fault does to a refresh token decides what must come out of it:
- the simulators' faults answer *instead of* the platform (its handler never runs), and a
  too-slow answer is cancelled with the client's call, so nothing was rotated: such faults must
  never cost a connection;
- an answer lost *after* the platform rotated (`SandboxTransport.lose`, or a request the
  platform only processes after its client gave up, `SandboxTransport.hold`) leaves the stored
  refresh token dead on a platform that rotates strictly. The engine asks once more at once:
  that saves the connection when the platform has not yet rotated, and otherwise the platform
  refuses the old token and the connection needs re-authorization. Tests below pin both
  outcomes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.routing import Mount

from shopkeys.config import Settings
from shopkeys.crypto import KeyRing
from shopkeys.providers import AppCredentials, Provider
from shopkeys.providers import get as provider_class
from shopkeys.refresh.outcomes import Outcome
from shopkeys.refresh.scheduler import Scheduler, SweepReport
from shopkeys.refresh.service import TokenService
from shopkeys.refresh_plan import RefreshPlan
from shopkeys.sandbox.aliexpress import AliExpressSimulator
from shopkeys.sandbox.app import MOUNT_PREFIX, simulated_app, simulator_class
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.sandbox.core import Fault, Lifetimes, SandboxClock, Simulator
from shopkeys.sandbox.shopline import ShoplineSimulator
from shopkeys.sandbox.tiktok_shop import TikTokShopSimulator
from shopkeys.store.records import ACTIVE, NEEDS_REAUTH, StoredTokens
from shopkeys.store.vault import Vault
from tests.conftest import TEST_KEYS, TEST_PUBLIC_URL
from tests.store.conftest import FakeClock

SANDBOX = "http://sandbox.test"
PLATFORMS = ("tiktok_shop", "shopline", "aliexpress")
HOUR = 3600.0
DAY = 24 * HOUR
#: The engine's platform call timeout in these tests; slow faults wait longer than this.
CALL_TIMEOUT = timedelta(milliseconds=50)
SLOW = 0.15

# Parameters a callback may carry that `exchange_code` takes as its own (see connect.py).
_RESERVED = frozenset({"code", "state", "self", "http", "redirect_uri"})


class SandboxTransport(httpx2.AsyncBaseTransport):
    """The ASGI transport to the simulators, with what a real network adds.

    - A simulator's dropped connection (its app raises mid-response) reaches the client as the
      `RemoteProtocolError` a socket would give, not as the app's exception.
    - `lose[platform]`: how many refresh answers to lose after the platform processed them.
    - `hold[platform]`: how many refresh requests to hold on their way, the client waiting (and
      timing out) meanwhile; `release` then delivers them in order, as a server does with
      requests whose clients gave up, and their answers go nowhere.
    Counts every refresh request per platform.
    """

    def __init__(self, app: Starlette) -> None:
        self.inner = httpx2.ASGITransport(app=app)
        self.refreshes: Counter[str] = Counter()
        self.lose: Counter[str] = Counter()
        self.hold: Counter[str] = Counter()
        self.held: list[tuple[asyncio.Event, asyncio.Task[httpx2.Response]]] = []

    @staticmethod
    def is_refresh(request: httpx2.Request) -> tuple[str, bool]:
        platform = request.url.path.removeprefix(MOUNT_PREFIX + "/").split("/")[0]
        body = request.content.decode(errors="replace")
        query = request.url.query.decode(errors="replace")
        refresh = "refresh" in request.url.path or "refresh_token" in body + query
        return platform, refresh and "grant_type=authorization_code" not in body

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        platform, refresh = self.is_refresh(request)
        if refresh:
            self.refreshes[platform] += 1
        try:
            if refresh and self.hold[platform] > 0:
                self.hold[platform] -= 1
                gate = asyncio.Event()
                task = asyncio.get_running_loop().create_task(self._later(gate, request))
                self.held.append((gate, task))
                # The client's timeout cancels this wait, not the request on its way.
                response = await asyncio.shield(task)
            else:
                response = await self.inner.handle_async_request(request)
        except ConnectionAbortedError:
            raise httpx2.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            ) from None
        if refresh and self.lose[platform] > 0:
            self.lose[platform] -= 1
            await response.aread()
            raise httpx2.ReadError("connection reset by peer", request=request)
        return response

    async def _later(self, gate: asyncio.Event, request: httpx2.Request) -> httpx2.Response:
        await gate.wait()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        return response

    async def release(self) -> list[httpx2.Response | BaseException]:
        """Let the held requests reach the platform, one after the other; their answers."""
        answers: list[httpx2.Response | BaseException] = []
        while self.held:
            gate, task = self.held.pop(0)
            gate.set()
            answers.extend(await asyncio.gather(task, return_exceptions=True))
        return answers


class Sandbox:
    """The three simulators whose tokens expire, in-process, on the test's clock."""

    def __init__(self, clock: FakeClock, *, seed: int, lifetimes: dict[str, Lifetimes]) -> None:
        self.clock = clock
        self.settings = Settings(_env_file=None, public_url=TEST_PUBLIC_URL)
        self.simulators: dict[str, Simulator] = {}
        for name in PLATFORMS:
            cls = simulator_class(name)
            self.simulators[name] = cls(
                simulated_app(self.settings, name),
                lifetimes=lifetimes.get(name) or cls.default_lifetimes(),
                clock=SandboxClock(clock),
                seed=seed,
            )
        app = Starlette(
            routes=[
                Mount(f"{MOUNT_PREFIX}/{name}", app=sim.asgi())
                for name, sim in self.simulators.items()
            ]
        )
        self.transport = SandboxTransport(app)
        self.http = httpx2.AsyncClient(transport=self.transport, timeout=10)
        self.providers: dict[str, Provider] = {}
        for name, sim in self.simulators.items():
            app_ = sim.app
            credentials = AppCredentials(
                app_.client_id, app_.client_secret, service_id=app_.service_id
            )
            self.providers[name] = provider_class(name)(
                credentials, base_url=f"{SANDBOX}{MOUNT_PREFIX}/{name}", clock=clock
            )

    async def connect(self, vault: Vault, name: str, login: str) -> str:
        """A merchant authorizes the app on `name` and the grant is stored; the connection id."""
        provider = self.providers[name]
        redirect_uri = self.settings.platform(name).redirect_uri
        location = await press(
            self.http, provider.authorization_url("st4te", redirect_uri), login=login
        )
        params = callback_params(location)
        extra = {k: v for k, v in params.items() if k not in _RESERVED}
        grant = await provider.exchange_code(self.http, params["code"], redirect_uri, **extra)
        account = await provider.identify(self.http, grant)
        connection, created = await vault.connections.upsert(
            grant, account, end_user_id=f"user-{login}"
        )
        assert created
        return connection.id

    def faults(self, name: str) -> Any:
        return self.simulators[name].faults

    def token_alive(self, name: str, stored: StoredTokens) -> bool:
        """Whether the platform itself would accept the stored access token now."""
        sim = self.simulators[name]
        now = self.clock()
        token = stored.access_token
        if isinstance(sim, TikTokShopSimulator):
            issued = sim.access_tokens.get(token)
            return (
                issued is not None and not issued.authorization.revoked and now < issued.expires_at
            )
        if isinstance(sim, ShoplineSimulator):
            row = sim.tokens.get(token)
            return (
                row is not None
                and not row.revoked
                and (row.expires_in is None or now.timestamp() < row.created_at + row.expires_in)
            )
        assert isinstance(sim, AliExpressSimulator)
        access = sim.access_tokens.get(token)
        return access is not None and now < access.expires_at

    def refresh_token_alive(self, name: str, stored: StoredTokens) -> bool:
        """Whether the platform would still refresh with the stored refresh token."""
        sim = self.simulators[name]
        token = stored.refresh_token or ""
        if isinstance(sim, TikTokShopSimulator):
            issued = sim.refresh_tokens.get(token)
            return issued is not None and not issued.authorization.revoked
        if isinstance(sim, ShoplineSimulator):
            row = sim.refresh_tokens.get(token)
            return row is not None and not row.revoked
        assert isinstance(sim, AliExpressSimulator)
        return token in sim.refresh_tokens


#: Tokens of an hour on every platform; SHOPLINE's refresh token dies a day after its access
#: token (as on the platform), AliExpress's lives 30 days (a launched app has 60).
SHORT = {
    "tiktok_shop": Lifetimes(code=600, access=HOUR, refresh=None),
    "shopline": Lifetimes(code=600, access=HOUR, refresh=HOUR + DAY),
    "aliexpress": Lifetimes(code=1800, access=HOUR, refresh=30 * DAY),
}
#: When an hour-long token is surely due: its lead is 12 minutes, up to 72 s more with jitter.
DUE = 49 * 60


@dataclass
class Engine:
    vault: Vault
    tokens: TokenService
    scheduler: Scheduler


def engine_for(
    engine: AsyncEngine, clock: FakeClock, sandbox: Sandbox, rng: random.Random
) -> Engine:
    vault = Vault(
        engine, KeyRing.parse(TEST_KEYS), clock=clock, plan=RefreshPlan(random=rng.random)
    )
    tokens = TokenService(
        vault,
        sandbox.providers,
        sandbox.http,
        clock=clock,
        owner="faults",
        call_timeout=CALL_TIMEOUT,
        jitter=rng.random,
    )
    renewing = [name for name in PLATFORMS if provider_class(name).renews_refresh_token]
    assert renewing == ["shopline"]
    scheduler = Scheduler(tokens, vault, renewing=renewing, clock=clock, concurrency=16)
    return Engine(vault, tokens, scheduler)


@pytest.fixture
async def sandbox(clock: FakeClock) -> AsyncIterator[Sandbox]:
    box = Sandbox(clock, seed=1234, lifetimes=SHORT)
    try:
        yield box
    finally:
        await box.transport.release()
        await box.http.aclose()


#: The platform error codes each simulator answers that mean "try again later".
PLATFORM_ERRORS = {
    "tiktok_shop": ["36009003", "36009002"],
    "shopline": ["server_error", "temporarily_unavailable"],
    "aliexpress": ["ServiceUnavailable", "InternalError", "ApiCallLimit"],
}


def random_fault(rng: random.Random, platform: str) -> Fault | None:
    """One of the temporary faults, at a random rate."""
    rate = rng.uniform(0.15, 0.6)
    kind = rng.choice(["none", "5xx", "slow", "429", "malformed", "drop", "platform", "slow-5xx"])
    if kind == "none":
        return None
    if kind == "5xx":
        return Fault(status=rng.choice([500, 502, 503, 504]), rate=rate)
    if kind == "slow":
        return Fault(latency=SLOW, rate=rate)
    if kind == "429":
        return Fault(status=429, retry_after=rng.choice([1, 30, 90, 300]), rate=rate)
    if kind == "malformed":
        return Fault(malformed=True, rate=rate)
    if kind == "drop":
        return Fault(drop=True, rate=rate)
    if kind == "platform":
        return Fault(platform_error=rng.choice(PLATFORM_ERRORS[platform]), rate=rate)
    # Slow and then failing anyway: the client has given up before the error comes.
    return Fault(latency=SLOW, status=503, rate=rate)


async def test_a_fleet_rides_out_random_temporary_faults(
    engine: AsyncEngine, clock: FakeClock, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """60 connections over three platforms, connected over half an hour so that their
    refreshes come due all the time; 80 minutes of faults that change every ten minutes, a
    sweep every two minutes; then calm until every connection is healthy again."""
    # Separate generators: the faults chosen do not depend on how the refreshes interleave.
    chooser = random.Random(20300101)
    world = engine_for(engine, clock, sandbox, random.Random(1))
    vault = world.vault
    ids: dict[str, str] = {}
    spacing = random.Random(2)
    for i in range(60):
        name = PLATFORMS[i % 3]
        ids[await sandbox.connect(vault, name, f"store-{i:02}")] = name
        clock.advance(spacing.uniform(0, 60))

    reports: list[SweepReport] = []
    fired: Counter[str] = Counter()
    faulty_until = clock.now + timedelta(minutes=80)

    async def check_invariants(*, platform_side: bool) -> None:
        connections = await vault.connections.find(limit=100)
        assert len(connections) == 60
        for connection in connections:
            # A temporary fault never ends a grant, nor leaves a connection unplanned.
            assert connection.status == ACTIVE, (connection.provider, connection.last_error)
            assert connection.next_refresh_at is not None
        if platform_side:
            for connection_id, name in ids.items():
                stored = await vault.connections.tokens(connection_id)
                assert stored is not None
                # What is stored is what the platform issued last: nothing was lost.
                assert sandbox.refresh_token_alive(name, stored), name

    with caplog.at_level(logging.WARNING):
        sweeps = 0
        while clock.now < faulty_until:
            if sweeps % 5 == 0:
                for name in PLATFORMS:
                    fault = random_fault(chooser, name)
                    if fault is None:
                        sandbox.faults(name).clear()
                    else:
                        sandbox.faults(name).set("refresh", fault)
                        fired[name] += 1
                await check_invariants(platform_side=True)
            reports.append(await world.scheduler.sweep())  # nothing may escape it
            await check_invariants(platform_side=False)
            clock.advance(120)
            sweeps += 1

        for name in PLATFORMS:
            sandbox.faults(name).clear()
        for _ in range(60):
            reports.append(await world.scheduler.sweep())
            await check_invariants(platform_side=False)
            connections = await vault.connections.find(limit=100)
            healthy = [
                c.refresh_failures == 0 and (c.access_expires_at or clock.now) > clock.now
                for c in connections
            ]
            if all(healthy):
                break
            clock.advance(120)

    outcomes = sum((r.outcomes for r in reports), Counter())
    # The faults did happen, and were recorded as what they were.
    assert sum(fired.values()) >= 15
    assert outcomes[Outcome.TEMPORARY_FAILURE] > 5 and outcomes[Outcome.RATE_LIMITED] > 0
    assert outcomes[Outcome.NEEDS_REAUTH] == 0
    assert outcomes[Outcome.REFRESHED] >= 60
    kinds: Counter[str] = Counter()
    error_kinds: Counter[str] = Counter()
    for connection_id in ids:
        for event in await vault.events.recent(connection_id, limit=1000):
            kinds[event.kind] += 1
            if event.kind == "refresh_failed":
                error_kinds[event.detail.get("kind", "")] += 1
    assert kinds["needs_reauth"] == 0
    assert set(error_kinds) == {"temporary", "rate_limited"}, error_kinds
    # Every connection refreshed, its last refresh a success, its tokens good on its platform.
    for connection_id, name in ids.items():
        stored = await vault.connections.tokens(connection_id)
        assert stored is not None
        assert stored.connection.last_refreshed_at is not None
        assert stored.connection.refresh_failures == 0
        assert sandbox.token_alive(name, stored), name
        assert sandbox.refresh_token_alive(name, stored), name
    # No surprise reached the scheduler's last resort, and no sweep failed.
    surprises = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert surprises == [], [r.getMessage() for r in surprises]


# -- answers lost after the platform acted -----------------------------------------------------


async def connected_and_due(
    engine: AsyncEngine, clock: FakeClock, sandbox: Sandbox, name: str
) -> tuple[Engine, str]:
    world = engine_for(engine, clock, sandbox, random.Random(5))
    connection_id = await sandbox.connect(world.vault, name, "lost-answer")
    clock.advance(DUE)
    return world, connection_id


@pytest.mark.parametrize("name", PLATFORMS)
async def test_a_lost_answer_on_a_strictly_rotating_platform_ends_the_grant(
    engine: AsyncEngine, clock: FakeClock, sandbox: Sandbox, name: str
) -> None:
    """The platform rotated and the answer never arrived: the stored refresh token is dead.

    The engine asks again once with it (the platform might not have acted); the platform refuses
    it, no other refresh stored a newer one, so the merchant must authorize again. Nothing can
    do better without the platform accepting the old token for a while.
    """
    world, connection_id = await connected_and_due(engine, clock, sandbox, name)
    sandbox.transport.lose[name] = 1
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.NEEDS_REAUTH: 1})
    assert sandbox.transport.refreshes[name] == 2  # the lost one and the retry
    connection = await world.vault.connections.get(connection_id)
    assert connection is not None
    assert connection.status == NEEDS_REAUTH and connection.last_error_kind == "needs_reauth"
    kinds = [e.kind for e in reversed(await world.vault.events.recent(connection_id))]
    assert kinds == ["connected", "needs_reauth"]


@pytest.mark.parametrize("name", ["tiktok_shop", "aliexpress"])
async def test_a_lost_answer_is_recovered_where_the_platform_does_not_rotate(
    engine: AsyncEngine,
    clock: FakeClock,
    sandbox: Sandbox,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sandbox.simulators[name], "rotate_refresh_tokens", False)
    world, connection_id = await connected_and_due(engine, clock, sandbox, name)
    sandbox.transport.lose[name] = 1
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.REFRESHED: 1})
    assert sandbox.transport.refreshes[name] == 2
    stored = await world.vault.connections.tokens(connection_id)
    assert stored is not None and stored.connection.status == ACTIVE
    assert sandbox.token_alive(name, stored) and sandbox.refresh_token_alive(name, stored)


@pytest.mark.parametrize("name", PLATFORMS)
async def test_a_timed_out_call_the_platform_finishes_later(
    engine: AsyncEngine, clock: FakeClock, sandbox: Sandbox, name: str
) -> None:
    """The client gives up (call timeout) on a request the platform only gets to later.

    The engine's immediate retry reaches the platform first and is answered: the connection
    has the retry's tokens, and the late request, with the token the retry rotated away, is
    refused with nobody listening.
    """
    world, connection_id = await connected_and_due(engine, clock, sandbox, name)
    sandbox.transport.hold[name] = 1
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.REFRESHED: 1})
    (late,) = await sandbox.transport.release()
    assert isinstance(late, httpx2.Response)
    assert sandbox.transport.refreshes[name] == 2
    stored = await world.vault.connections.tokens(connection_id)
    assert stored is not None and stored.connection.status == ACTIVE
    assert sandbox.token_alive(name, stored) and sandbox.refresh_token_alive(name, stored)


@pytest.mark.parametrize("name", PLATFORMS)
async def test_two_timed_out_calls_the_platform_finishes_later_end_the_grant(
    engine: AsyncEngine, clock: FakeClock, sandbox: Sandbox, name: str
) -> None:
    """Both the call and its retry time out; the platform then rotates on the first and refuses
    the second. The engine recorded a temporary failure and kept the token it sent, which the
    platform no longer accepts: the next attempt finds the grant dead."""
    world, connection_id = await connected_and_due(engine, clock, sandbox, name)
    sandbox.transport.hold[name] = 2
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.TEMPORARY_FAILURE: 1})
    connection = await world.vault.connections.get(connection_id)
    assert connection is not None and connection.last_error is not None
    assert "did not answer in time" in connection.last_error
    await sandbox.transport.release()
    stored = await world.vault.connections.tokens(connection_id)
    assert stored is not None and stored.connection.status == ACTIVE
    assert not sandbox.refresh_token_alive(name, stored)

    clock.advance(60)
    report = await world.scheduler.sweep()
    assert report.outcomes == Counter({Outcome.NEEDS_REAUTH: 1})
    assert sandbox.transport.refreshes[name] == 3
    connection = await world.vault.connections.get(connection_id)
    assert connection is not None and connection.status == NEEDS_REAUTH


async def test_nothing_is_rotated_by_faults_the_platform_answers_itself(
    engine: AsyncEngine, clock: FakeClock, sandbox: Sandbox
) -> None:
    """Every injected fault at rate 1 on all three platforms, one after the other: each sweep
    fails, none ends a grant, and once the faults stop every connection refreshes."""
    world = engine_for(engine, clock, sandbox, random.Random(9))
    ids = {await sandbox.connect(world.vault, name, f"all-{name}"): name for name in PLATFORMS}
    clock.advance(DUE)
    faults = [
        Fault(status=503),
        Fault(status=500),
        Fault(latency=SLOW),
        Fault(latency=SLOW, status=502),
        Fault(status=429, retry_after=30),
        Fault(malformed=True),
        Fault(drop=True),
    ]
    for fault in faults:
        for name in PLATFORMS:
            sandbox.faults(name).set("refresh", fault)
        report = await world.scheduler.sweep()
        failed = report.outcomes[Outcome.TEMPORARY_FAILURE] + report.outcomes[Outcome.RATE_LIMITED]
        assert failed == report.claimed, (fault, report.outcomes)
        for name in PLATFORMS:
            error_code = PLATFORM_ERRORS[name][0]
            sandbox.faults(name).set("refresh", Fault(platform_error=error_code))
        report = await world.scheduler.sweep()
        assert report.outcomes[Outcome.REFRESHED] == 0
        clock.advance(120)
    for name in PLATFORMS:
        sandbox.faults(name).clear()
    for _ in range(30):
        report = await world.scheduler.sweep()
        done = [await world.vault.connections.tokens(cid) for cid in ids]
        if all(s is not None and s.connection.last_refreshed_at for s in done):
            break
        clock.advance(60)
    for connection_id, name in ids.items():
        stored = await world.vault.connections.tokens(connection_id)
        assert stored is not None and stored.connection.status == ACTIVE
        assert stored.connection.last_refreshed_at is not None, name
        assert sandbox.token_alive(name, stored) and sandbox.refresh_token_alive(name, stored)
        kinds = {e.kind for e in await world.vault.events.recent(connection_id, limit=200)}
        assert "needs_reauth" not in kinds
