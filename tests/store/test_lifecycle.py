"""Lifecycle defects of issue 11, on SQLite and PostgreSQL: concurrent migrations, private SQLite
files, metadata kept through a refresh, concurrent writes to one connection never a 500."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

import shopkeys.store.connections as connections_module
import shopkeys.store.repository as repository_module
from shopkeys.config import Settings
from shopkeys.runtime import open_runtime
from shopkeys.store import database as db
from shopkeys.store.repository import Backoff, VersionConflict
from shopkeys.store.vault import Vault
from shopkeys.web.problems import problem_response
from tests.conftest import TEST_KEYS
from tests.service import test_connect_flow as flow
from tests.service.test_connect_flow import Driver
from tests.store import test_vault
from tests.store.conftest import account, grant

# Fixtures defined elsewhere; pytest finds them by these module-level names.
empty_database_url = test_vault.empty_database_url
sqlite_vault = test_vault.sqlite_vault
db_vault = flow.db_vault
driver = flow.driver


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, under which files are created world-readable unless told otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The vault's retries without real waits; the list collects the waits asked for."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)  # let the other writers run, as a real wait would

    monkeypatch.setattr(repository_module, "BACKOFF", Backoff(sleep=sleep, jitter=lambda: 1.0))
    return waits


# -- 1. migrations under a lock -------------------------------------------------------------------

# Each process connects and loads the migrations, says it is ready, and upgrades when told: they
# all start their upgrades together.
PROCESSES = 2
UPGRADE = """
import asyncio, sys
from pathlib import Path
from shopkeys.store import database as db

async def main():
    engine = db.create_engine(db.database_url(sys.argv[1], Path(sys.argv[2])))
    try:
        await db.pending_migrations(engine)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await db.upgrade(engine)
    finally:
        await engine.dispose()

asyncio.run(main())
"""


async def test_two_processes_upgrade_a_fresh_database_at_once(
    empty_database_url: str, tmp_path: Path
) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE, empty_database_url, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stderr is not None
            if process.stdout.readline().strip() != "ready":
                process.wait(timeout=60)
                pytest.fail(f"a process failed before its upgrade: {process.stderr.read()}")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [p.returncode for p in processes] == [0] * PROCESSES, [err for _, err in outcomes]

    engine = db.create_engine(db.database_url(empty_database_url, tmp_path))
    try:
        assert await db.pending_migrations(engine) == []
        async with engine.connect() as connection:
            versions = (await connection.execute(text("SELECT * FROM alembic_version"))).all()
        assert len(versions) == 1
    finally:
        await engine.dispose()


class _Cursor:
    """A cursor whose first `locked` switches to WAL fail as a concurrent opener's would."""

    def __init__(self, locked: int, error: str = "database is locked") -> None:
        self.locked = locked
        self.error = error
        self.tries = 0

    def execute(self, statement: str) -> None:
        self.tries += 1
        if self.tries <= self.locked:
            raise sqlite3.OperationalError(self.error)


def test_switching_to_wal_waits_out_another_process_doing_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(db.time, "sleep", pauses.append)
    cursor = _Cursor(locked=3)
    db._write_ahead_log(cursor)
    assert cursor.tries == 4
    assert pauses == [db.WAL_RETRY_SECONDS * n for n in (1, 2, 3)]


def test_switching_to_wal_gives_up_in_the_end_and_never_hides_other_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(db.time, "sleep", lambda _: None)
    always = _Cursor(locked=db.WAL_ATTEMPTS)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db._write_ahead_log(always)
    assert always.tries == db.WAL_ATTEMPTS
    broken = _Cursor(locked=1, error="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk"):
        db._write_ahead_log(broken)
    assert broken.tries == 1


# -- 2. the SQLite files are the owner's alone ------------------------------------------------


@pytest.mark.usefixtures("umask_022")
async def test_the_data_directory_and_database_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # No database URL: SQLite in the data directory, as `make run` starts.
    settings = Settings(
        _env_file=None, data_dir=data_dir, database_url=None, encryption_keys=SecretStr(TEST_KEYS)
    )
    runtime = await open_runtime(settings)
    try:
        # A write, so that SQLite's -wal and -shm files exist while the engine is open.
        await runtime.vault.connections.upsert(grant(), account(), end_user_id="u1")
        files = sorted(p.name for p in data_dir.iterdir() if p.name.startswith(db.SQLITE_FILE))
        assert {"shopkeys.db", "shopkeys.db-wal", "shopkeys.db-shm"} <= set(files)
        assert _mode(data_dir) == 0o700
        for name in files:
            assert _mode(data_dir / name) == 0o600, name
    finally:
        await runtime.close()


@pytest.mark.usefixtures("umask_022")
async def test_a_database_file_open_to_others_is_tightened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As an earlier version left it: directory 0755, database 0644.
    directory = tmp_path / "old"
    directory.mkdir(mode=0o755)
    database = directory / db.SQLITE_FILE
    database.touch(mode=0o644)
    assert _mode(database) == 0o644

    with caplog.at_level(logging.WARNING, logger="shopkeys"):
        engine = db.create_engine(db.database_url(f"sqlite:///{database}", tmp_path))
        try:
            await db.upgrade(engine)
        finally:
            await engine.dispose()
    assert _mode(database) == 0o600
    assert _mode(directory / (db.SQLITE_FILE + db.SQLITE_LOCK_SUFFIX)) == 0o600
    # The directory may be shared with other things: it is named, not changed.
    assert _mode(directory) == 0o755
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert str(directory) in warned and "chmod 700" in warned


# -- 3. a refresh keeps the metadata it does not replace ----------------------------------------


async def test_a_refresh_keeps_metadata_it_does_not_replace(vault: Vault) -> None:
    connected = replace(
        grant("tiktok_shop"), raw={"token_type": "Bearer", "shop_region": "GB", "locale": "en"}
    )
    connection, _ = await vault.connections.upsert(connected, account(), end_user_id="u1")
    assert connection.metadata["shop_region"] == "GB"

    refreshed = replace(
        grant("tiktok_shop", access="access-2-" + "n" * 24, refresh="refresh-2-" + "m" * 24),
        raw={"token_type": "bearer", "open_id": "o-1"},
    )
    saved = await vault.connections.save_refresh(
        connection.id, refreshed, used=connected.refresh_token or ""
    )
    assert saved.metadata == {
        "token_type": "bearer",  # what the refresh answered replaces what was there
        "open_id": "o-1",
        "shop_region": "GB",
        "locale": "en",
    }
    assert (await vault.connections.get(connection.id)) == saved


async def test_tiktok_shop_region_survives_a_refresh_through_the_sandbox(driver: Driver) -> None:
    connection = await driver.connect("tiktok_shop")
    region = connection["metadata"].get("shop_region")
    assert region and connection["metadata"].get("locale")

    refreshed = await driver.api("POST", f"/v1/connections/{connection['id']}/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["version"] > connection["version"]
    assert refreshed.json()["metadata"]["shop_region"] == region
    shown = await driver.api("GET", f"/v1/connections/{connection['id']}")
    assert shown.json()["metadata"]["shop_region"] == region
    assert shown.json()["metadata"]["locale"] == connection["metadata"]["locale"]


# -- 4. concurrent writes to one connection: retried, else 409, never a 500 ---------------------


async def test_many_concurrent_imports_of_one_account(vault: Vault, no_waits: list[float]) -> None:
    limit = asyncio.Semaphore(4)

    async def one(n: int) -> str:
        async with limit:
            try:
                await vault.connections.import_grant(
                    grant(access=f"access-{n:03d}-" + "i" * 24), account(), end_user_id="u1"
                )
            except VersionConflict:
                return "conflict"
            return "stored"

    outcomes = await asyncio.gather(*(one(n) for n in range(60)))
    # On SQLite upserts take the write lock before they read, on PostgreSQL the row lock: they
    # wait their turn, so none conflicts (a conflict would be allowed, anything else is not).
    assert outcomes.count("stored") == 60
    [row] = await vault.connections.find()
    assert row.version == 60  # every stored import counted once, none half-written
    assert len(await vault.events.recent(row.id, limit=100)) == 60


def _bump_after_read(vault: Vault, times: int) -> list[str]:
    """Make another process bump the connection's version right after the vault reads its refresh
    token, `times` times: each time between a writer's read and its write. Returns the ids bumped.

    SQLite ignores FOR UPDATE, so this is the window where another process (the CLI, a second
    instance) can commit.
    """
    import sqlite3

    database = str(vault.engine.url.database)
    original = vault.connections._open_token
    bumped: list[str] = []

    def open_then_bump(row_id: str, field_name: str, value: str) -> str:
        plain = original(row_id, field_name, value)
        if field_name == "refresh_token" and len(bumped) < times:
            bumped.append(row_id)
            with sqlite3.connect(database, timeout=5) as other:
                bump = "UPDATE connections SET version = version + 1 WHERE id = ?"
                other.execute(bump, (row_id,))
        return plain

    vault.connections._open_token = open_then_bump  # type: ignore[method-assign]
    return bumped


async def test_a_write_outlasts_repeated_conflicts_with_growing_waits(
    sqlite_vault: Vault, no_waits: list[float]
) -> None:
    vault = sqlite_vault
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    bumped = _bump_after_read(vault, 7)
    rotated = grant(access="access-2-" + "n" * 24, refresh="refresh-2-" + "m" * 24)
    saved = await vault.connections.save_refresh(
        connection.id, rotated, used=grant().refresh_token or ""
    )
    assert len(bumped) == 7
    assert saved.version == 1 + 7 + 1
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None and stored.refresh_token == rotated.refresh_token
    # Full jitter (here at its maximum) under a ceiling that doubles, then stays at its cap.
    assert no_waits == [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.2]


async def test_a_write_that_keeps_conflicting_gives_up_with_version_conflict(
    sqlite_vault: Vault, no_waits: list[float]
) -> None:
    vault = sqlite_vault
    connection, _ = await vault.connections.upsert(grant(), account(), end_user_id=None)
    bumped = _bump_after_read(vault, 1000)
    with pytest.raises(VersionConflict):
        await vault.connections.save_refresh(
            connection.id, grant(), used=grant().refresh_token or ""
        )
    assert len(bumped) == Backoff().attempts
    assert len(no_waits) == Backoff().attempts - 1
    stored = await vault.connections.tokens(connection.id)
    assert stored is not None and stored.connection.last_refreshed_at is None


async def test_only_a_unique_key_violation_counts_as_a_lost_insert_race(
    engine: AsyncEngine,
) -> None:
    async def violation(statement: str) -> IntegrityError:
        async with engine.connect() as connection:
            with pytest.raises(IntegrityError) as caught:
                await connection.execute(text(statement))
        return caught.value

    row = (
        "INSERT INTO api_keys (id, name, prefix, key_hash, scope, created_at) "
        "VALUES ('key_1', 'n', 'p', '{hash}', 'admin', CURRENT_TIMESTAMP)"
    )
    async with engine.begin() as connection:
        await connection.execute(text(row.format(hash="h1")))
    duplicate = await violation(row.format(hash="h1").replace("key_1", "key_2"))
    missing = await violation("INSERT INTO api_keys (id) VALUES ('key_3')")
    assert connections_module._lost_insert_race(duplicate)
    assert not connections_module._lost_insert_race(missing)


def test_a_version_conflict_is_a_409_in_the_error_shape() -> None:
    answer = problem_response(VersionConflict("con_abc"))
    assert answer.status_code == 409
    body: dict[str, Any] = json.loads(bytes(answer.body))
    assert set(body) == {"error"}
    assert body["error"]["code"] == "conflict"
    assert "try again" in body["error"]["message"]


async def test_concurrent_imports_over_http_are_never_a_server_error(driver: Driver) -> None:
    body = {"provider": "aliexpress", "account_id": "2000000777", "end_user_id": "u-import"}
    limit = asyncio.Semaphore(4)

    async def one(n: int) -> httpx2.Response:
        async with limit:
            token = f"50000imported{n:04d}" + "c" * 16
            driver.secrets.add(token)
            return await driver.api(
                "POST", "/v1/connections/import", json={**body, "access_token": token}
            )

    answers = await asyncio.gather(*(one(n) for n in range(40)))
    statuses = sorted({a.status_code for a in answers})
    assert set(statuses) <= {200, 201, 409}, [a.text for a in answers if a.status_code >= 500]
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "conflict"
