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
        if url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
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
