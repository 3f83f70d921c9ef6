"""`shopkeys keys rotate` while a service runs: the service switches to the new primary, and the
vault says which keys the stored tokens use, so no key still in use is thrown away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from shopkeys import crypto
from shopkeys.config import Settings
from shopkeys.crypto import KEY_FILE_NAME, load_key_ring, write_key_file
from shopkeys.grant import Grant
from shopkeys.runtime import Runtime, open_runtime
from shopkeys.store.database import create_engine
from shopkeys.store.database import database_url as database_url_of
from shopkeys.store.vault import Vault
from tests.conftest import SERVICE_API_KEY, LiveService, make_settings
from tests.store.conftest import account, grant


def _key_file_settings(database_url: str, tmp_path: Path) -> Settings:
    """The test's settings with no configured keys: the key file in the data directory."""
    return make_settings(database_url, tmp_path / "data", encryption_keys=None)


async def _rotate_like_the_cli(cli: Runtime) -> str:
    """What `shopkeys keys rotate` does, in this test's event loop."""
    assert cli.keys.path is not None
    ring = cli.keys.ring.with_new_primary()
    write_key_file(cli.keys.path, ring)
    cli.vault.keys = ring
    await cli.vault.connections.reencrypt()
    return ring.primary.id


async def test_a_running_service_encrypts_under_the_primary_rotated_by_the_cli(
    database_url: str, tmp_path: Path
) -> None:
    settings = _key_file_settings(database_url, tmp_path)
    service = await open_runtime(settings)
    cli = await open_runtime(settings, migrate=False)
    try:
        old_id = service.keys.ring.primary.id
        await service.vault.connections.upsert(grant(), account(), end_user_id="u1")
        assert await service.vault.key_ids_in_use() == {old_id: 2}

        new_id = await _rotate_like_the_cli(cli)
        assert await service.vault.key_ids_in_use() == {new_id: 2}
        # The service's background loop looks at the key file (here: one look, by hand).
        assert service.vault.keys.follow() is True
        second = grant(access="access-2-" + "b" * 24, account_id="acct-2", refresh=None)
        await service.vault.connections.upsert(second, account("acct-2"), end_user_id="u2")
        assert await service.vault.key_ids_in_use() == {new_id: 3}
        # Both processes read everything.
        for runtime in (service, cli):
            listed = await runtime.vault.connections.find()
            for connection in listed:
                assert await runtime.vault.connections.tokens(connection.id) is not None
    finally:
        await cli.close()
        await service.close()


async def test_key_ids_in_use_counts_every_token_column(database_url: str, tmp_path: Path) -> None:
    settings = _key_file_settings(database_url, tmp_path)
    service = await open_runtime(settings)
    try:
        assert await service.vault.key_ids_in_use() == {}
        old_id = service.keys.ring.primary.id
        with_public = Grant(
            provider="ecwid",
            access_token="secret_1_access",
            refresh_token=None,
            access_expires_at=None,
            refresh_expires_at=None,
            scopes=[],
            account_id="1001",
            public_token="public_1_storefront",
        )
        await service.vault.connections.upsert(with_public, account("1001"), end_user_id=None)
        await service.vault.connections.upsert(grant(), account(), end_user_id=None)
        assert await service.vault.key_ids_in_use() == {old_id: 4}
        service.vault.keys = service.vault.keys.with_new_primary()
        await service.vault.connections.upsert(
            grant(access="access-2-" + "b" * 24, account_id="acct-2"),
            account("acct-2"),
            end_user_id=None,
        )
        assert await service.vault.key_ids_in_use() == {
            old_id: 4,
            service.vault.keys.primary.id: 2,
        }
    finally:
        await service.close()


async def test_keep_following_switches_an_idle_ring_to_a_rotated_key_file(tmp_path: Path) -> None:
    service = load_key_ring(None, tmp_path).ring
    rotated = load_key_ring(None, tmp_path).ring.with_new_primary()
    follower = asyncio.create_task(service.keep_following(every=0.001))
    try:
        write_key_file(tmp_path / KEY_FILE_NAME, rotated)
        # Polling for the outcome, with a deadline; no write happens meanwhile.
        deadline = time.monotonic() + 10
        while service.keys != rotated.keys and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert service.keys == rotated.keys
        assert not follower.done()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


@pytest.fixture
def key_file_service(
    monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path
) -> Iterator[LiveService]:
    """The live service with its keys in the key file, looking at it every few milliseconds
    instead of seconds, so the test waits for an outcome, not for a clock."""
    from shopkeys.cli.serve import service_app
    from tests.live import reserve_socket, serve, url_of

    monkeypatch.setattr(crypto, "FOLLOW_EVERY", 0.005)
    sock = reserve_socket()
    settings = make_settings(
        database_url, tmp_path / "data", public_url=url_of(sock), encryption_keys=None
    )
    app = service_app(settings, sandbox=True, sandbox_api_key=SERVICE_API_KEY)
    with serve(app, sock) as served:
        yield LiveService(url=served, api_key=SERVICE_API_KEY, app=app, settings=app.state.settings)


async def test_a_running_service_writes_under_the_primary_of_a_rotated_key_file(
    key_file_service: LiveService, http: httpx2.AsyncClient, tmp_path: Path
) -> None:
    data_dir = key_file_service.settings.data_dir
    rotated = load_key_ring(None, data_dir).ring.with_new_primary()
    write_key_file(data_dir / KEY_FILE_NAME, rotated)
    # The service's background look at the file, seen without triggering one from here.
    running = key_file_service.runtime.vault.keys
    deadline = time.monotonic() + 10
    while running.keys[0].id != rotated.primary.id and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert running.keys[0].id == rotated.primary.id

    body = {"provider": "aliexpress", "access_token": "50000imported", "account_id": "4000000001"}
    answer = await http.post(
        f"{key_file_service.url}/v1/connections/import",
        json=body,
        headers=key_file_service.headers,
    )
    assert answer.status_code == 201, answer.text
    configured = key_file_service.settings.database_url
    assert configured is not None
    engine = create_engine(database_url_of(configured.get_secret_value(), tmp_path))
    try:
        in_use = await Vault(engine, rotated).key_ids_in_use()
    finally:
        await engine.dispose()
    assert in_use == {rotated.primary.id: 1}
