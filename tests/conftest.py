"""Fixtures shared by the whole suite: one live sandbox for the session, reset for every test."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from shopkeys.config import Settings
from shopkeys.providers import AppCredentials, Provider, get
from shopkeys.sandbox import Sandbox, build_sandbox
from shopkeys.sandbox.core import Simulator
from tests.live import reserve_socket, serve, url_of

# The simulated apps' registered redirect URIs point here; tests read redirects, never follow them.
TEST_PUBLIC_URL = "http://shopkeys.test"


@dataclass
class LiveSandbox:
    """The four simulators served on a loopback socket."""

    url: str
    sandbox: Sandbox
    settings: Settings

    def base_url(self, provider: str) -> str:
        return f"{self.url}/sandbox/{provider}"

    def simulator(self, provider: str) -> Simulator:
        return self.sandbox.simulators[provider]

    def redirect_uri(self, provider: str) -> str:
        return self.settings.platform(provider).redirect_uri

    def provider(self, name: str) -> Provider:
        """The real provider client, pointed at its simulator and sharing the simulator's clock."""
        simulator = self.simulator(name)
        app = simulator.app
        credentials = AppCredentials(app.client_id, app.client_secret, service_id=app.service_id)
        return get(name)(credentials, base_url=self.base_url(name), clock=simulator.clock)


@pytest.fixture(scope="session")
def live_sandbox_server() -> Iterator[LiveSandbox]:
    settings = Settings(_env_file=None, public_url=TEST_PUBLIC_URL)
    sandbox = build_sandbox(settings)
    with serve(sandbox.app) as url:
        yield LiveSandbox(url=url, sandbox=sandbox, settings=settings)


@pytest.fixture
def live_sandbox(live_sandbox_server: LiveSandbox) -> Iterator[LiveSandbox]:
    """The session's sandbox with no faults and the real time, as every test expects to find it."""
    live_sandbox_server.sandbox.reset()
    yield live_sandbox_server
    live_sandbox_server.sandbox.reset()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


# -- databases: every vault and service test runs on SQLite and on PostgreSQL ---------------------

POSTGRES_URL = os.environ.get("SHOPKEYS_TEST_POSTGRES_URL")
IN_CI = os.environ.get("CI") == "true"
#: A fixed key ring for tests (never used outside them).
TEST_KEYS = "ktest:" + "A" * 43

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=[
            pytest.mark.postgres,
            # Outside CI a missing server skips; in CI the fixture below fails instead.
            pytest.mark.skipif(
                not POSTGRES_URL and not IN_CI,
                reason="no PostgreSQL: set SHOPKEYS_TEST_POSTGRES_URL (CI=true makes this fail)",
            ),
        ],
    ),
]


async def _connect(url: str, database: str | None) -> Any:
    """An asyncpg connection to `database` on the server of `url`."""
    import asyncpg

    parts = make_url(url)
    return await asyncpg.connect(
        user=parts.username,
        password=parts.password,
        host=parts.host or "127.0.0.1",
        port=parts.port or 5432,
        database=database,
    )


async def _admin(url: str, statement: str) -> None:
    connection = await _connect(url, make_url(url).database or "postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if not POSTGRES_URL:
        pytest.fail("CI=true but SHOPKEYS_TEST_POSTGRES_URL is not set: PostgreSQL tests must run")
    name = f"shopkeys_test_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        asyncio.run(_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate(url: str) -> None:
    tables = "connections, auth_sessions, events, deliveries, api_keys, webhook_receipts"
    connection = await _connect(url, make_url(url).database)
    try:
        exists = await connection.fetchval("SELECT to_regclass('public.connections') IS NOT NULL")
        if exists:
            await connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shopkeys.db'}"
    url: str = request.getfixturevalue("postgres_server_url")
    asyncio.run(_truncate(url))
    return url


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: its own data directory and database, no `.env`, fixed keys."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": SecretStr(database_url),
        "encryption_keys": SecretStr(TEST_KEYS),
        "public_url": TEST_PUBLIC_URL,
        # Tests that exercise the scheduler turn it on; the others must not race it.
        "scheduler": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


# -- the service itself, in sandbox mode, over a real socket --------------------------------------

SERVICE_API_KEY = "sk_test_" + "s" * 32


@dataclass
class LiveService:
    """shopkeys serving its API, pages and the four simulators on one loopback port."""

    url: str
    api_key: str
    app: Any  # FastAPI
    settings: Settings

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def simulator(self, provider: str) -> Simulator:
        sandbox: Sandbox = self.app.state.sandbox
        return sandbox.simulators[provider]


@contextmanager
def serve_service(
    database_url: str, data_dir: Path, *, sandbox: bool = True, **overrides: Any
) -> Iterator[LiveService]:
    """The service as `shopkeys serve` builds it, on a loopback port of its own that is also its
    public URL; `make_settings` with `overrides`. Without `sandbox`, no simulator is mounted and
    the platforms are what `overrides` configure."""
    from shopkeys.cli.serve import service_app

    sock = reserve_socket()
    settings = make_settings(database_url, data_dir, public_url=url_of(sock), **overrides)
    app = service_app(settings, sandbox=sandbox, sandbox_api_key=SERVICE_API_KEY)
    with serve(app, sock) as url:
        yield LiveService(url=url, api_key=SERVICE_API_KEY, app=app, settings=app.state.settings)


@pytest.fixture
def live_service(database_url: str, tmp_path: Path) -> Iterator[LiveService]:
    with serve_service(database_url, tmp_path / "data") as live:
        yield live
