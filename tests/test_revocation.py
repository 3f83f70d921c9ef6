"""An API key revoked by another process (the CLI) stops working in a running service within a
sweep, not after the minute-long recheck."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.exc import OperationalError

from shopkeys import api_keys
from shopkeys.api_keys import ApiKeys
from shopkeys.crypto import load_key_ring
from shopkeys.runtime import open_runtime
from shopkeys.store.database import create_engine
from shopkeys.store.database import database_url as resolve_url
from shopkeys.store.vault import Vault
from tests.conftest import TEST_KEYS, LiveService, make_settings


@pytest.fixture
def swept_service(
    monkeypatch: pytest.MonkeyPatch, database_url: str, request: pytest.FixtureRequest
) -> LiveService:
    """The live service, sweeping for revocations every few milliseconds instead of seconds, so
    the test waits for an outcome, not for a clock."""
    monkeypatch.setattr(api_keys, "SWEEP_EVERY", timedelta(milliseconds=20))
    service: LiveService = request.getfixturevalue("live_service")
    return service


@pytest.fixture
async def other_process(swept_service: LiveService, tmp_path: Path) -> AsyncIterator[ApiKeys]:
    """API keys as the CLI sees them: its own engine and vault on the service's database."""
    configured = swept_service.settings.database_url
    assert configured is not None
    engine = create_engine(resolve_url(configured.get_secret_value(), tmp_path))
    try:
        yield ApiKeys(Vault(engine, load_key_ring(TEST_KEYS, tmp_path).ring))
    finally:
        await engine.dispose()


async def test_a_key_revoked_elsewhere_gets_401_within_a_sweep(
    swept_service: LiveService, other_process: ApiKeys, http: httpx2.AsyncClient
) -> None:
    record, value = await other_process.create("app", "read")
    url = f"{swept_service.url}/v1/connections"
    headers = {"Authorization": f"Bearer {value}"}
    admitted = await http.get(url, headers=headers)
    assert admitted.status_code == 200, admitted.text
    # Now the service knows the key from memory; the CLI revokes it in another process.
    await other_process.revoke(record.id)

    # Polling for the outcome, with a deadline far below the old 60-120 s.
    deadline = time.monotonic() + 10
    answer = await http.get(url, headers=headers)
    while answer.status_code == 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        answer = await http.get(url, headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "unauthorized"
    # The service's own key still works.
    still = await http.get(url, headers=swept_service.headers)
    assert still.status_code == 200


async def test_a_sweep_drops_only_keys_revoked_elsewhere(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path / "data")
    service = await open_runtime(settings)
    cli = await open_runtime(settings, migrate=False)
    try:
        keys = service.api_keys
        revoked, revoked_value = await cli.api_keys.create("old")
        kept, kept_value = await cli.api_keys.create("kept")
        assert await keys.check(revoked_value) == revoked
        assert await keys.check(kept_value) == kept
        await cli.api_keys.revoke(revoked.id)
        # Until the sweep runs, memory still trusts the key (the defect the sweep closes).
        assert keys.check_cached(revoked_value) == (True, revoked)

        assert await keys.drop_revoked() == 1
        assert keys.check_cached(revoked_value) == (True, None)
        assert await keys.check(revoked_value) is None
        assert keys.check_cached(kept_value) == (True, kept)
        # A second sweep finds nothing new to drop, and memory stays as it is.
        assert await keys.drop_revoked() == 0
        assert keys.check_cached(kept_value) == (True, kept)
    finally:
        await cli.close()
        await service.close()


async def test_a_database_hiccup_does_not_end_the_sweeps(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path / "data")
    service = await open_runtime(settings)
    cli = await open_runtime(settings, migrate=False)
    sweeps = 0
    swept_after_failure = asyncio.Event()
    original = service.vault.api_keys.revoked_hashes

    async def flaky(since):  # type: ignore[no-untyped-def]
        nonlocal sweeps
        sweeps += 1
        if sweeps == 1:
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        found = await original(since)
        swept_after_failure.set()
        return found

    service.vault.api_keys.revoked_hashes = flaky  # type: ignore[method-assign]
    record, value = await cli.api_keys.create("app")
    assert await service.api_keys.check(value) == record
    await cli.api_keys.revoke(record.id)
    # The first sweep after the revocation fails; a later one must still find it.
    loop = asyncio.create_task(service.api_keys.keep_revocations_seen(timedelta(0)))
    try:
        # Bounded only so that a broken loop fails the test instead of hanging it.
        await asyncio.wait_for(swept_after_failure.wait(), timeout=10)
        assert sweeps >= 2
        assert not loop.done()
        assert service.api_keys.check_cached(value) == (True, None)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await cli.close()
        await service.close()
