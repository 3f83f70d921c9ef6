"""What the multi-process proofs share: a PostgreSQL database of their own, the sandbox served
from the test process on a real port, and real `shopkeys serve` / `shopkeys worker` processes
pointed at it.

These tests run on PostgreSQL only (several processes on one database is what they prove); like
the rest of the suite, they skip without a server outside CI and fail without one in CI.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shopkeys.config import Settings
from shopkeys.credentials import AppCredentials
from shopkeys.crypto import load_key_ring
from shopkeys.grant import Account, Grant
from shopkeys.platform import Platform
from shopkeys.providers import Provider, get
from shopkeys.sandbox import build_sandbox
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.store.database import create_engine, database_url, upgrade
from shopkeys.store.vault import Vault
from tests.conftest import IN_CI, POSTGRES_URL, TEST_KEYS, LiveSandbox, _admin
from tests.live import reserve_socket, serve

#: Marks for a test that needs PostgreSQL: skipped without one, except in CI (the fixture fails).
POSTGRES_ONLY = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not POSTGRES_URL and not IN_CI,
        reason="no PostgreSQL: set SHOPKEYS_TEST_POSTGRES_URL (CI=true makes this fail)",
    ),
]

#: How long a process may take to start (two cores, several starting at once).
START_DEADLINE = 60.0


# -- the database -------------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own, migrated, dropped afterwards (processes that
    were killed may have left connections: the drop forces them out)."""
    if not POSTGRES_URL:
        pytest.fail("CI=true but SHOPKEYS_TEST_POSTGRES_URL is not set: PostgreSQL tests must run")
    name = f"shopkeys_engine_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        # Migrated here, once, so the processes started next do not all migrate at once (they
        # would wait for each other on the migration lock, which is slower, not wrong).
        asyncio.run(_migrate(url))
        yield url
    finally:
        asyncio.run(_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate(url: str) -> None:
    engine = create_engine(database_url(url, Path(".")))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def vault(pg_url: str, tmp_path: Path) -> AsyncIterator[Vault]:
    """The test's own view of the database the processes share."""
    engine = create_engine(database_url(pg_url, tmp_path))
    try:
        yield Vault(engine, load_key_ring(TEST_KEYS, tmp_path).ring)
    finally:
        await engine.dispose()


async def scalar(vault: Vault, sql: str, **params: Any) -> Any:
    async with vault.engine.connect() as connection:
        return await connection.scalar(text(sql), params)


async def execute(vault: Vault, sql: str, **params: Any) -> None:
    async with vault.engine.begin() as connection:
        await connection.execute(text(sql), params)


async def rows(vault: Vault, sql: str, **params: Any) -> list[Any]:
    async with vault.engine.connect() as connection:
        return list(await connection.execute(text(sql), params))


# -- the sandbox, served from the test process ----------------------------------------------------


@dataclass
class ServedSandbox(LiveSandbox):
    """The four simulators on a loopback port of the test process: their state is the test's to
    look at (`simulator(name).calls["refresh"]`, the tokens they issued)."""

    def client(self, provider: str) -> Provider:
        """The real provider client, pointed at its simulator."""
        app = self.simulator(provider).app
        credentials = AppCredentials(app.client_id, app.client_secret, service_id=app.service_id)
        return get(provider)(
            credentials, base_url=self.base_url(provider), redirect_uri=app.redirect_uri
        )

    def env(self, *providers: str) -> dict[str, str]:
        """The settings that point shopkeys' `providers` at their simulators, with the
        credentials the simulated apps accept: what an operator would set."""
        env = {"SHOPKEYS_PUBLIC_URL": self.settings.public_url}
        for provider in providers:
            platform = Platform.parse(provider)
            prefix = f"SHOPKEYS_{platform.value.upper()}_"
            names = get(platform).credential_names
            app = self.simulator(provider).app
            env[prefix + "BASE_URL"] = self.base_url(provider)
            env[prefix + names.client_id.upper()] = app.client_id
            env[prefix + names.client_secret.upper()] = app.client_secret
            if names.service_id and app.service_id:
                env[prefix + names.service_id.upper()] = app.service_id
        return env


@contextmanager
def served_sandbox(public_url: str) -> Iterator[ServedSandbox]:
    """A sandbox of the test's own (not the session's), whose simulated apps are registered with
    `public_url`'s callbacks."""
    settings = Settings(_env_file=None, public_url=public_url)
    sandbox = build_sandbox(settings)
    with serve(sandbox.app) as url:
        yield ServedSandbox(url=url, sandbox=sandbox, settings=settings)


async def issue_grant(
    http: httpx2.AsyncClient, sandboxed: ServedSandbox, provider: str, login: str
) -> tuple[Grant, Account]:
    """A grant the sandbox issued to `login`, obtained as the connect flow obtains one: the
    merchant authorizes on the simulator's page, the code is exchanged, the account identified."""
    client = sandboxed.client(provider)
    redirect_uri = sandboxed.simulator(provider).app.redirect_uri
    state = secrets.token_urlsafe(16)
    callback = await press(http, client.authorization_url(state, redirect_uri), login=login)
    params = callback_params(callback)
    assert params.get("state") == state, callback
    code = params.pop("code")
    extra = {k: v for k, v in params.items() if k != "state"}
    grant = await client.exchange_code(http, code, redirect_uri, **extra)
    return grant, await client.identify(http, grant)


# -- shopkeys processes ---------------------------------------------------------------------------


def process_env(pg_url: str, data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a shopkeys process on the shared database: none of the developer's
    SHOPKEYS_ settings, the tests' key ring, and `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPKEYS_")}
    env.update(
        {
            "SHOPKEYS_DATABASE_URL": pg_url,
            "SHOPKEYS_ENCRYPTION_KEYS": TEST_KEYS,
            "SHOPKEYS_DATA_DIR": str(data_dir),
        }
    )
    env.update(settings)
    return env


@dataclass
class Process:
    """A shopkeys process of the test's; its output goes to `log`, which failures show."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def release(self) -> None:
        """Let a held process run its command."""
        assert self.popen.stdin is not None, "not a held process"
        self.popen.stdin.write(b"\n")
        self.popen.stdin.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no waiting for refreshes in flight."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=20)

    def stop(self) -> int:
        """SIGTERM and wait: the graceful shutdown; returns the exit code."""
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            self.popen.stdin.close()  # a held process that was never released
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=20)
        return self.popen.returncode


def launch(
    name: str, args: list[str], env: dict[str, str], workdir: Path, *, held: bool = False
) -> Process:
    """`shopkeys ARGS` in a process of its own. `held`: it imports everything, then waits for
    `Process.release()` before running the command, so a test can pay the start-up (seconds of
    imports on two cores) ahead of the moment it needs the process."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    code = "from shopkeys.cli import main; main()"
    if held:
        code = "import sys; from shopkeys.cli import main; sys.stdin.readline(); main()"
    with log.open("wb") as handle:
        popen = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE if held else subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return Process(name=name, popen=popen, log=log)


async def wait_for(process: Process, ready: Any, what: str) -> None:
    """Until `ready()` is true: waiting for start-up, not timing (it ends as soon as it is)."""
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if await ready():
            return
        if process.popen.poll() is not None or time.monotonic() > deadline:
            process.stop()
            pytest.fail(f"{process.name} did not {what}:\n{process.output()[-4000:]}")
        await asyncio.sleep(0.05)


def free_ports(count: int) -> list[int]:
    """Ports free now, for processes to listen on (closed here, so they can be bound)."""
    sockets = [reserve_socket() for _ in range(count)]
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


async def start_servers(
    ports: list[int], env: dict[str, str], workdir: Path, processes: list[Process]
) -> list[Process]:
    """`shopkeys serve` on each port, started together (and added to `processes`, which the
    fixture stops); returns them once every one answers."""
    servers = []
    for index, port in enumerate(ports):
        process = launch(f"serve-{index}", ["serve", "--port", str(port)], env, workdir)
        process.url = f"http://127.0.0.1:{port}"
        servers.append(process)
        processes.append(process)
    async with httpx2.AsyncClient(timeout=5) as http:
        for process in servers:

            async def healthy(process: Process = process) -> bool:
                try:
                    answer = await http.get(f"{process.url}/healthz")
                except httpx2.TransportError:
                    return False
                return answer.status_code == 200

            await wait_for(process, healthy, "start serving")
    return servers


def held_worker(name: str, env: dict[str, str], workdir: Path) -> Process:
    """A `shopkeys worker` process, imported and waiting for `start_worker`."""
    return launch(name, ["worker"], env, workdir, held=True)


async def start_worker(process: Process) -> Process:
    """Let a held worker run; returns once it logged that it started (its first sweep is under
    way then)."""
    process.release()

    async def started() -> bool:
        return " started: sweeps every " in process.output()

    await wait_for(process, started, "start")
    return process


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Every process a test starts goes here; those still running are stopped afterwards."""
    started: list[Process] = []
    yield started
    for process in started:
        if process.popen.poll() is None:
            process.stop()
