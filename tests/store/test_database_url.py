"""`database_url()`: what SHOPKEYS_DATABASE_URL may look like and what shopkeys makes of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopkeys.errors import ConfigurationError
from shopkeys.store.database import SQLITE_FILE, database_url

#: The fixture of the same name shadows the function inside tests that take it.
database_url_of = database_url


def test_default_is_sqlite_in_the_data_directory(tmp_path: Path) -> None:
    url = database_url(None, tmp_path / "data")
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == str(tmp_path / "data" / SQLITE_FILE)
    assert database_url("", Path(".shopkeys")).database == ".shopkeys/shopkeys.db"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2"])
def test_plain_postgresql_url_gets_asyncpg(scheme: str) -> None:
    url = database_url(f"{scheme}://user:pw@db.example:5432/keys", Path("."))
    assert url.drivername == "postgresql+asyncpg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "user",
        "pw",
        "db.example",
        5432,
        "keys",
    )


def test_sslmode_is_mapped_for_asyncpg() -> None:
    url = database_url("postgresql://u:pw@h/db?sslmode=require", Path("."))
    assert dict(url.query) == {"ssl": "require"}


def test_connect_timeout_is_mapped_for_asyncpg() -> None:
    url = database_url("postgresql://u:pw@h/db?connect_timeout=7&sslmode=disable", Path("."))
    assert dict(url.query) == {"timeout": "7", "ssl": "disable"}


def test_sqlite_url_gets_aiosqlite(tmp_path: Path) -> None:
    url = database_url(f"sqlite:///{tmp_path}/x.db", tmp_path)
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == f"{tmp_path}/x.db"


@pytest.mark.parametrize(
    "bad",
    [
        "not a url",
        "postgresql://user:hunter2secret@host:notaport/db",
        "mysql://user:hunter2secret@host/db",
        "http://user:hunter2secret@host/db",
        "postgresql://user:hunter2secret@host/db?weird=1",
    ],
)
def test_bad_url_is_a_configuration_error_without_the_password(bad: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        database_url(bad, Path("."))
    assert "hunter2secret" not in str(caught.value)
    assert "SHOPKEYS_DATABASE_URL" in str(caught.value)


async def test_a_url_with_libpq_parameters_connects(database_url: str, tmp_path: Path) -> None:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from shopkeys.store.database import create_engine

    if make_url(database_url).get_backend_name() == "postgresql":
        database_url += "?sslmode=disable&connect_timeout=5&command_timeout=10"
    engine = create_engine(database_url_of(database_url, tmp_path))
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
