"""Nothing readable at rest: the database, opened directly, holds no token in plain text."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from shopkeys.crypto import KeyRing
from shopkeys.store import database as db
from shopkeys.store.vault import Vault
from tests.conftest import TEST_KEYS
from tests.store.conftest import FakeClock, account, grant

ACCESS = "PLAINACCESS-" + "q1w2e3r4t5y6u7i8o9p0"
REFRESH = "PLAINREFRESH-" + "z9x8c7v6b5n4m3l2k1j0"
ROTATED = "PLAINROTATED-" + "a1s2d3f4g5h6j7k8l9"


async def _seed(url: str, data_dir: Path) -> None:
    engine = db.create_engine(db.database_url(url, data_dir))
    try:
        await db.upgrade(engine)
        vault = Vault(engine, KeyRing.parse(TEST_KEYS), clock=FakeClock())
        connection, _ = await vault.connections.upsert(
            grant(access=ACCESS, refresh=REFRESH), account(), end_user_id="u1"
        )
        await vault.connections.save_refresh(
            connection.id, grant(access=ROTATED, refresh=ROTATED + "-r"), used=REFRESH
        )
        stored = await vault.connections.tokens(connection.id)
        assert stored is not None and stored.access_token == ROTATED
        # A reconnect with the original tokens, then a key rotation: more ciphertexts written.
        await vault.connections.upsert(
            grant(access=ACCESS, refresh=REFRESH), account(), end_user_id=None
        )
        vault.keys = vault.keys.with_new_primary()
        assert await vault.connections.reencrypt() == 1
    finally:
        await engine.dispose()


NEEDLES = [ACCESS, REFRESH, ROTATED, ROTATED + "-r"]


async def test_no_token_in_plain_text(database_url: str, tmp_path: Path) -> None:
    await _seed(database_url, tmp_path)
    if make_url(database_url).get_backend_name() == "sqlite":
        files = [p for p in tmp_path.iterdir() if p.name.startswith("shopkeys.db")]
        assert files, "the SQLite file is where the URL says"
        raw = b"".join(p.read_bytes() for p in files)
        assert b"acct-1" in raw  # the search would find a plain value
        for needle in NEEDLES:
            assert needle.encode() not in raw
            assert needle.encode("utf-16-le") not in raw
    else:
        dump = await _postgres_dump(database_url)
        assert "acct-1" in dump
        for needle in NEEDLES:
            assert needle not in dump


async def _postgres_dump(url: str) -> str:
    import asyncpg

    parts = make_url(url)
    connection = await asyncpg.connect(
        user=parts.username,
        password=parts.password,
        host=parts.host,
        port=parts.port,
        database=parts.database,
    )
    try:
        tables = [
            r["tablename"]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname='public'"
            )
        ]
        assert "connections" in tables
        chunks = []
        for table in tables:
            for record in await connection.fetch(f'SELECT t::text AS row FROM "{table}" t'):
                chunks.append(record["row"])
        return "\n".join(chunks)
    finally:
        await connection.close()
