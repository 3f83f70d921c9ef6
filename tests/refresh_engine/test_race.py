"""Proof: many callers on several `shopkeys serve` processes cause one refresh.

The sandbox is served from the test process and counts the refresh requests it receives. Real
`shopkeys serve` processes (no `--sandbox`: TikTok Shop is pointed at the sandbox through its
settings, as an operator would point it at the platform) share one PostgreSQL database, with the
scheduler off so only the hot path acts. A store is connected through the real connect flow, its
access token made "just expired" in the database, and every process is asked for its token at
once. TikTok Shop rotates refresh tokens strictly: a second refresh would either be counted by
the sandbox or, presenting the used token, turn the connection `needs_reauth`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import update

from shopkeys.api_keys import ApiKeys
from shopkeys.grant import Grant
from shopkeys.sandbox.browser import press
from shopkeys.sandbox.core import Fault
from shopkeys.sandbox.tiktok_shop import TikTokShopSimulator
from shopkeys.store.repository import CHANGES_CHANNEL
from shopkeys.store.tables import ConnectionRow
from shopkeys.store.vault import Vault
from tests.refresh_engine.conftest import (
    POSTGRES_ONLY,
    Process,
    ServedSandbox,
    free_ports,
    process_env,
    rows,
    served_sandbox,
    start_servers,
)

pytestmark = POSTGRES_ONLY

PROVIDER = "tiktok_shop"
#: The platform's refresh takes this long: every caller arrives while it is under way.
REFRESH_LATENCY = 12.0
CALLERS = 200


@pytest.fixture
def ports() -> list[int]:
    return free_ports(4)


@pytest.fixture
def sandboxed(ports: list[int]) -> Iterator[ServedSandbox]:
    # The simulated app's redirect URI is the first process's callback: the deployment's public
    # URL, which every process is given (they stand behind one address).
    with served_sandbox(f"http://127.0.0.1:{ports[0]}") as served:
        yield served


class Deployment:
    """Several `shopkeys serve` processes on one database, and the test's way into them."""

    def __init__(
        self, servers: list[Process], sandboxed: ServedSandbox, vault: Vault, api_key: str
    ) -> None:
        self.servers = servers
        self.sandboxed = sandboxed
        self.vault = vault
        self.headers = {"Authorization": f"Bearer {api_key}"}

    @property
    def simulator(self) -> TikTokShopSimulator:
        simulator = self.sandboxed.simulator(PROVIDER)
        assert isinstance(simulator, TikTokShopSimulator)
        return simulator

    def url(self, index: int) -> str:
        url = self.servers[index % len(self.servers)].url
        assert url is not None
        return url

    async def connect(self, http: httpx2.AsyncClient, login: str) -> str:
        """The real connect flow through the first process: a connect session, the merchant
        authorizing on the simulated platform, the callback. Returns the connection's id."""
        created = await http.post(
            f"{self.url(0)}/v1/connect-sessions",
            json={"provider": PROVIDER, "end_user_id": login},
            headers=self.headers,
        )
        assert created.status_code == 201, created.text
        callback = await press(http, created.json()["url"], login=login)
        assert callback.startswith(self.url(0)), callback
        done = await http.get(callback)
        assert done.status_code == 200, done.text
        found = re.search(r"<code>(con_[A-Za-z0-9_-]+)</code>", done.text)
        assert found, done.text
        return found.group(1)

    async def expire(self, connection_id: str) -> None:
        """Make the stored access token "just expired", and announce the change as any writer
        does (NOTIFY), so no process keeps it in its cache."""
        async with self.vault.engine.begin() as connection:
            await connection.execute(
                update(ConnectionRow)
                .where(ConnectionRow.id == connection_id)
                .values(access_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            await connection.exec_driver_sql(
                "SELECT pg_notify($1, $2)", (CHANGES_CHANNEL, connection_id)
            )

    async def ask_all(
        self, http: httpx2.AsyncClient, connection_id: str, callers: int
    ) -> list[httpx2.Response]:
        """`callers` concurrent token requests, spread round-robin over the processes."""
        return await asyncio.gather(
            *(
                http.get(
                    f"{self.url(n)}/v1/connections/{connection_id}/token", headers=self.headers
                )
                for n in range(callers)
            )
        )

    async def kinds(self, connection_id: str) -> list[str]:
        return [e.kind for e in reversed(await self.vault.events.recent(connection_id))]

    async def token_works(self, http: httpx2.AsyncClient, access_token: str) -> None:
        """The platform accepts the token: the sandbox knows it, unexpired, and its signed API
        answers a call made with it."""
        issued = self.simulator.access_tokens.get(access_token)
        assert issued is not None, "the sandbox never issued the token handed out"
        assert issued.expires_at > self.simulator.clock()
        grant = Grant(
            provider=PROVIDER,
            access_token=access_token,
            refresh_token=None,
            access_expires_at=None,
            refresh_expires_at=None,
            scopes=[],
            account_id="",
        )
        account = await self.sandboxed.client(PROVIDER).identify(http, grant)
        assert account.shops


async def deploy(
    count: int,
    ports: list[int],
    sandboxed: ServedSandbox,
    vault: Vault,
    pg_url: str,
    tmp_path: Path,
    processes: list[Process],
) -> Deployment:
    _, api_key = await ApiKeys(vault).create("race", "admin")
    env = process_env(
        pg_url,
        tmp_path / "data",
        SHOPKEYS_SCHEDULER="false",
        **sandboxed.env(PROVIDER),
    )
    servers = await start_servers(ports[:count], env, tmp_path, processes)
    return Deployment(servers, sandboxed, vault, api_key)


def client() -> httpx2.AsyncClient:
    # Room for every caller at once: none waits in the client's pool for another to finish.
    limits = httpx2.Limits(max_connections=CALLERS + 50, max_keepalive_connections=CALLERS + 50)
    return httpx2.AsyncClient(timeout=REFRESH_LATENCY + 30, limits=limits)


async def test_two_hundred_callers_on_four_processes_cause_one_refresh(
    ports: list[int],
    sandboxed: ServedSandbox,
    vault: Vault,
    pg_url: str,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    deployment = await deploy(4, ports, sandboxed, vault, pg_url, tmp_path, processes)
    simulator = deployment.simulator
    async with client() as http:
        connection_id = await deployment.connect(http, "race-store")
        before = await vault.connections.tokens(connection_id)
        assert before is not None and before.refresh_token is not None
        await deployment.expire(connection_id)
        simulator.faults.set("refresh", Fault(latency=REFRESH_LATENCY))
        assert simulator.calls["refresh"] == 0

        started = time.monotonic()
        answers = await deployment.ask_all(http, connection_id, CALLERS)
        elapsed = time.monotonic() - started

        # Every caller waited for the one refresh (none was answered with the expired token).
        assert elapsed >= REFRESH_LATENCY
        assert [a.status_code for a in answers] == [200] * CALLERS, {
            a.status_code: a.text for a in answers if a.status_code != 200
        }
        tokens = {a.json()["access_token"] for a in answers}
        assert len(tokens) == 1
        (token,) = tokens
        assert token != before.access_token
        # Exactly one refresh reached the platform.
        assert simulator.calls["refresh"] == 1
        await deployment.token_works(http, token)

    after = await vault.connections.tokens(connection_id)
    assert after is not None
    assert after.connection.status == "active"
    assert after.access_token == token
    # The rotated refresh token is the one stored, and the only one the platform still takes.
    assert after.refresh_token not in (None, before.refresh_token)
    assert after.refresh_token in simulator.refresh_tokens
    assert before.refresh_token not in simulator.refresh_tokens
    assert await deployment.kinds(connection_id) == ["connected", "refreshed"]
    held = await rows(vault, "SELECT lease_owner FROM connections WHERE lease_owner IS NOT NULL")
    assert held == []


async def test_two_processes_never_rotate_the_same_refresh_token(
    ports: list[int],
    sandboxed: ServedSandbox,
    vault: Vault,
    pg_url: str,
    tmp_path: Path,
    processes: list[Process],
) -> None:
    """Without latency: the processes' refreshes of one connection land a few milliseconds
    apart at most. Five rounds, each on a connection no process has cached yet."""
    deployment = await deploy(2, ports, sandboxed, vault, pg_url, tmp_path, processes)
    simulator = deployment.simulator
    rounds = 5
    async with client() as http:
        connection_ids = [await deployment.connect(http, f"pair-{n}") for n in range(rounds)]
        for connection_id in connection_ids:
            await deployment.expire(connection_id)
        for connection_id in connection_ids:
            refreshes = simulator.calls["refresh"]
            answers = await deployment.ask_all(http, connection_id, 40)
            statuses = [a.status_code for a in answers]
            assert statuses == [200] * len(answers), {
                a.status_code: a.text for a in answers if a.status_code != 200
            }
            assert len({a.json()["access_token"] for a in answers}) == 1
            assert simulator.calls["refresh"] - refreshes == 1
            kinds = await deployment.kinds(connection_id)
            assert "needs_reauth" not in kinds and "refresh_failed" not in kinds, kinds

    found: list[Any] = await rows(vault, "SELECT id, status FROM connections ORDER BY id")
    assert {status for _, status in found} == {"active"}
    assert len(found) == rounds
