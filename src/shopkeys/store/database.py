"""Engines and migrations: SQLite in the data directory by default, PostgreSQL by URL."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shopkeys.errors import ConfigurationError

log = logging.getLogger("shopkeys")

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_FILE = "shopkeys.db"
#: The PostgreSQL advisory lock key migrations run under ("shopkeys" in ASCII): a fixed key, so
#: every shopkeys process sharing a database waits for the same lock.
MIGRATION_LOCK_KEY = 0x73686F706B657973
#: Beside a SQLite database: the file its migrations are locked on.
SQLITE_LOCK_SUFFIX = ".lock"
#: The SQLite database holds tokens (sealed) and everything about the stores in plain text, so
#: like the key file it is for its owner alone.
PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


#: libpq parameters (as in a plain PostgreSQL URL) and the asyncpg argument each becomes.
_LIBPQ_TO_ASYNCPG = {"sslmode": "ssl", "connect_timeout": "timeout"}
#: Query parameters passed on to asyncpg, and the type each must have (URLs carry strings).
_ASYNCPG_PARAMETERS: dict[str, type] = {
    "ssl": str,
    "timeout": float,
    "command_timeout": float,
    "statement_cache_size": int,
    "prepared_statement_cache_size": int,
}
_EXAMPLE = "postgresql://user:password@host:5432/db"


def database_url(configured: str | None, data_dir: Path) -> URL:
    """The async SQLAlchemy URL for a configured URL, or the SQLite file in `data_dir`.

    Plain `postgresql://` URLs, as every PostgreSQL tool writes them, get the asyncpg driver.
    Error messages never repeat the URL: it may hold a password.
    """
    if not configured:
        return make_url(f"sqlite+aiosqlite:///{(data_dir / SQLITE_FILE).as_posix()}")
    try:
        url = make_url(configured)
    except (ArgumentError, ValueError):
        # ValueError: a port that is not a number (SQLAlchemy parses it with int()).
        raise ConfigurationError(
            f"SHOPKEYS_DATABASE_URL is not a database URL (expected {_EXAMPLE})"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        query: dict[str, str | tuple[str, ...]] = {}
        for name, value in url.query.items():
            name = _LIBPQ_TO_ASYNCPG.get(name, name)
            if name not in _ASYNCPG_PARAMETERS:
                # asyncpg would fail on it at the first connection with a TypeError.
                raise ConfigurationError(
                    f"SHOPKEYS_DATABASE_URL: the parameter {name!r} is not supported; use "
                    f"{', '.join(sorted({*_LIBPQ_TO_ASYNCPG, *_ASYNCPG_PARAMETERS}))}"
                )
            kind = _ASYNCPG_PARAMETERS[name]
            if kind is not str:
                try:
                    kind(value)
                except (TypeError, ValueError):
                    raise ConfigurationError(
                        f"SHOPKEYS_DATABASE_URL: {name} must be a number"
                    ) from None
            query[name] = value
        return url.set(drivername="postgresql+asyncpg", query=query)
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise ConfigurationError(
        f"SHOPKEYS_DATABASE_URL: unsupported database {backend!r}; use SQLite or PostgreSQL "
        f"({_EXAMPLE})"
    )


def create_engine(url: URL) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so the CLI and service share it."""
    if url.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            _private_sqlite_files(path)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # asyncpg wants numbers where the URL has strings: pass those as typed connect arguments.
    query = dict(url.query)
    connect_args = {
        name: kind(query.pop(name))
        for name, kind in _ASYNCPG_PARAMETERS.items()
        if kind is not str and name != "prepared_statement_cache_size" and name in query
    }
    return create_async_engine(
        url.set(query=query),
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args=connect_args,
    )


def sqlite_path(url: URL) -> Path | None:
    """The SQLite database's file, or None when it has none (in memory, or named by a URI)."""
    name = url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def _private_sqlite_files(path: Path) -> None:
    """Create the database's directory (0700) and file (0600) before SQLite would (0644).

    SQLite gives its -wal and -shm files the mode of the database file, so they follow. A file
    already there with a looser mode is tightened: it is shopkeys' own. A directory already there
    is only warned about: the operator may share it with other things.
    """
    directory = path.parent
    directory.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
    if stat.S_IMODE(directory.stat().st_mode) & 0o077:
        log.warning("the database directory %s is open to other users; `chmod 700` it", directory)
    with contextlib.suppress(FileExistsError):
        # O_EXCL: never truncate, nor need write access to, a database someone else created.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
        _tighten(file)


def _tighten(file: Path) -> None:
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
        if mode & 0o077:
            file.chmod(mode & 0o700)
            log.warning("%s was open to other users: now mode %o", file, mode & 0o700)
    except FileNotFoundError:
        pass
    except PermissionError:
        # Not ours to change (another user created it): say so rather than refuse to start.
        log.warning("%s is open to other users and cannot be changed; `chmod 600` it", file)


#: Tries at switching a fresh SQLite database to WAL while another process does the same.
WAL_ATTEMPTS = 20
WAL_RETRY_SECONDS = 0.05


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    _write_ahead_log(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _write_ahead_log(cursor: Any) -> None:
    """Switch the database to WAL (it stays so: the mode belongs to the file).

    Two processes opening a fresh database at once (the service and a CLI command) both switch
    it, and SQLite answers the loser "database is locked" at once, without waiting out the busy
    timeout. The loser tries again after a short pause; by then the file is in WAL mode. The
    pause blocks this thread, which only ever happens while a database is being created.
    """
    for attempt in range(1, WAL_ATTEMPTS + 1):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # the driver's OperationalError, whichever adapter raised it
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS:
                raise
            time.sleep(WAL_RETRY_SECONDS * attempt)


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """Apply every migration not yet applied, one process at a time.

    Two processes started together on a fresh database would both find no tables and both
    create them, and one would crash. Under the lock the second waits, then finds the schema
    current.
    """
    async with _sqlite_migration_lock(engine.url), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # The transaction-level lock: released when the upgrade's transaction ends, committed
            # or not, so a failed migration cannot leave it held on a pooled connection.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "head"))


@contextlib.asynccontextmanager
async def _sqlite_migration_lock(url: URL) -> AsyncIterator[None]:
    """An exclusive lock on a file beside a SQLite database; nothing for other databases.

    SQLite runs shopkeys' DDL outside a transaction, so its own locking cannot keep two
    migrations apart. The lock belongs to the open file: closing it releases it, even when
    the process dies.
    """
    path = sqlite_path(url) if url.get_backend_name() == "sqlite" else None
    if path is None:
        yield
        return
    lock_file = path.with_name(path.name + SQLITE_LOCK_SUFFIX)
    descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        # In a thread: waiting for another process's migration must not stall the event loop.
        await asyncio.to_thread(fcntl.flock, descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


async def pending_migrations(engine: AsyncEngine) -> list[str]:
    """Revisions not yet applied, oldest first (empty when the schema is current)."""

    def check(sync: Connection) -> list[str]:
        script = ScriptDirectory.from_config(_alembic_config(sync))
        current = set(MigrationContext.configure(sync).get_current_heads())
        pending = []
        for revision in script.walk_revisions():
            if revision.revision in current:
                break
            pending.append(revision.revision)
        return list(reversed(pending))

    async with engine.connect() as connection:
        return await connection.run_sync(check)


def upgrade_blocking(url: URL) -> None:
    """Apply migrations from synchronous code (the CLI)."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
