"""Engines and migrations: SQLite in the data directory by default, PostgreSQL by URL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shopkeys.errors import ConfigurationError

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_FILE = "shopkeys.db"


def database_url(configured: str | None, data_dir: Path) -> URL:
    """The async SQLAlchemy URL for a configured URL, or the SQLite file in `data_dir`.

    Plain `postgresql://` URLs, as every PostgreSQL tool writes them, get the asyncpg driver.
    """
    if not configured:
        return make_url(f"sqlite+aiosqlite:///{(data_dir / SQLITE_FILE).as_posix()}")
    try:
        url = make_url(configured)
    except ArgumentError:
        raise ConfigurationError(
            "SHOPKEYS_DATABASE_URL is not a database URL (postgresql://user:pw@host:5432/db)"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        query = dict(url.query)
        # libpq's sslmode is spelled ssl for asyncpg.
        if "sslmode" in query:
            query["ssl"] = query.pop("sslmode")
        return url.set(drivername="postgresql+asyncpg", query=query)
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    raise ConfigurationError(f"unsupported database {backend!r}: use SQLite or PostgreSQL")


def create_engine(url: URL) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so the CLI and service share it."""
    if url.get_backend_name() == "sqlite":
        if url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """Apply every migration not yet applied."""
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "head"))


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
