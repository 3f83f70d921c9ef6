"""The issue's end-to-end test: the real service over a socket, the sandbox, both databases.

connect session -> simulated approval -> callback -> token fetch -> forced expiry -> token fetch
refreshes -> reconnect the same store -> every bad callback case -> no token in the database or
the logs. The helpers here are shared with `test_api.py`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx2
import pytest
from sqlalchemy import text, update

from shopkeys.crypto import load_key_ring
from shopkeys.grant import Grant
from shopkeys.platform import Platform
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.sandbox.core import Fault
from shopkeys.store.database import create_engine, database_url
from shopkeys.store.records import StoredTokens
from shopkeys.store.tables import AuthSessionRow, ConnectionRow
from shopkeys.store.vault import Vault
from tests.conftest import SERVICE_API_KEY, TEST_KEYS, LiveService

REFRESHABLE = ["aliexpress", "tiktok_shop", "shopline"]
TABLES = ("connections", "auth_sessions", "events", "api_keys")
FAILED_TITLE = "The store was not connected"


# -- helpers shared with test_api.py ------------------------------------------------------------


@dataclass
class Driver:
    """Drives the live service as an app and a merchant would, and looks into its database."""

    live: LiveService
    http: httpx2.AsyncClient
    vault: Vault
    #: Every secret seen during the test, to look for in the database and the logs.
    secrets: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return self.live.url

    async def api(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        kwargs.setdefault("headers", self.live.headers)
        return await self.http.request(method, f"{self.url}{path}", **kwargs)

    async def start(
        self, provider: str, end_user_id: str = "merchant-1", return_to: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"provider": provider, "end_user_id": end_user_id}
        if return_to is not None:
            body["return_to"] = return_to
        created = await self.api("POST", "/v1/connect-sessions", json=body)
        assert created.status_code == 201, created.text
        session: dict[str, Any] = created.json()
        self.secrets.add(callback_params(session["url"])["session"])  # the link's own secret
        return session

    async def approve(
        self,
        provider: str,
        *,
        login: str = "demo-store",
        end_user_id: str = "merchant-1",
        button: str = "Authorize",
    ) -> tuple[str, dict[str, Any]]:
        """A connect session pressed through on the simulator: (callback URL, the session)."""
        session = await self.start(provider, end_user_id)
        callback = await press(self.http, session["url"], button=button, login=login)
        for name in ("code", "state", "auth_code"):
            value = callback_params(callback).get(name)
            if value:
                self.secrets.add(value)
        return callback, session

    async def connect(
        self, provider: str, *, login: str = "demo-store", end_user_id: str = "merchant-1"
    ) -> dict[str, Any]:
        """Connect a store end to end; the connection as the API shows it."""
        callback, _ = await self.approve(provider, login=login, end_user_id=end_user_id)
        done = await self.http.get(callback)
        assert done.status_code == 200, done.text
        found = re.search(r"<code>(con_[A-Za-z0-9_-]+)</code>", done.text)
        assert found, done.text
        # The page's curl line works when pasted: the variable is inside double quotes.
        assert 'curl -H "Authorization: Bearer $SHOPKEYS_API_KEY" http' in done.text
        shown = await self.api("GET", f"/v1/connections/{found.group(1)}")
        assert shown.status_code == 200, shown.text
        connection: dict[str, Any] = shown.json()
        await self.remember_tokens(connection["id"])
        return connection

    async def token(self, connection_id: str, **kwargs: Any) -> httpx2.Response:
        answer = await self.api("GET", f"/v1/connections/{connection_id}/token", **kwargs)
        if answer.status_code == 200:
            self.secrets.add(answer.json()["access_token"])
        return answer

    async def stored(self, connection_id: str) -> StoredTokens:
        stored = await self.vault.connections.tokens(connection_id)
        assert stored is not None
        return stored

    async def remember_tokens(self, connection_id: str) -> StoredTokens:
        stored = await self.stored(connection_id)
        self.secrets.add(stored.access_token)
        if stored.refresh_token:
            self.secrets.add(stored.refresh_token)
        return stored

    async def expire(self, connection_id: str, ago: timedelta = timedelta(minutes=1)) -> None:
        """Force the stored access token's expiry into the past.

        The service's clock is the real one, so the expiry moves instead; the service's cache
        entry is dropped as its TTL would (a write by another process is only seen then).
        """
        async with self.vault.engine.begin() as connection:
            await connection.execute(
                update(ConnectionRow)
                .where(ConnectionRow.id == connection_id)
                .values(access_expires_at=datetime.now(UTC) - ago)
            )
        self.live.runtime.tokens.forget(connection_id)

    async def expire_state(self, session_id: str) -> None:
        async with self.vault.engine.begin() as connection:
            await connection.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.id == session_id)
                .values(state_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )

    async def events(self, connection_id: str) -> list[dict[str, Any]]:
        answer = await self.api("GET", f"/v1/connections/{connection_id}/events")
        assert answer.status_code == 200, answer.text
        events: list[dict[str, Any]] = answer.json()
        return events

    async def kinds(self, connection_id: str) -> list[str]:
        """Event kinds, oldest first."""
        return [e["kind"] for e in reversed(await self.events(connection_id))]

    async def snapshot(self) -> tuple[list[tuple[Any, ...]], int]:
        """Every connection (id, version, status) and the number of events: what a bad callback
        must leave as it found it."""
        async with self.vault.engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT id, version, status FROM connections ORDER BY id")
            )
            count = await connection.scalar(text("SELECT count(*) FROM events"))
        return [tuple(r) for r in rows], int(count or 0)

    async def token_works(self, provider: str, access_token: str, account_id: str) -> None:
        """The token is accepted by the simulator's API (or identify) endpoint."""
        client = self.live.runtime.providers[provider]
        if provider == "aliexpress":
            # AliExpress names the seller in the token response; call a business API instead.
            base = self.live.settings.platform(provider).base_url
            answer = await self.http.get(
                f"{base}/sync",
                params={"method": "aliexpress.merchant.profile.get"},
                auth=client.auth(access_token),
            )
            assert "aliexpress_merchant_profile_get_response" in answer.json(), answer.text
            return
        grant = Grant(
            provider=provider,
            access_token=access_token,
            refresh_token=None,
            access_expires_at=None,
            refresh_expires_at=None,
            scopes=[],
            account_id=account_id,
        )
        account = await client.identify(self.http, grant)
        assert account.account_id == account_id
        if provider == "tiktok_shop":
            assert account.shops

    async def database_text(self) -> str:
        """Every row of every table as text, plus the SQLite file's raw bytes."""
        parts: list[str] = []
        async with self.vault.engine.connect() as connection:
            for table in TABLES:
                result = await connection.execute(text(f"SELECT * FROM {table}"))
                parts.extend(repr(tuple(row)) for row in result)
        database = self.vault.engine.url.database
        if self.vault.engine.url.get_backend_name() == "sqlite" and database:
            for suffix in ("", "-wal"):
                path = Path(database + suffix)
                if path.exists():
                    parts.append(path.read_bytes().decode("latin-1"))
        return "\n".join(parts)


@pytest.fixture
async def db_vault(live_service: LiveService, tmp_path: Path) -> AsyncIterator[Vault]:
    """A vault of the test's own on the service's database (the service's engine belongs to the
    server thread's event loop)."""
    configured = live_service.settings.database_url
    assert configured is not None
    engine = create_engine(database_url(configured.get_secret_value(), tmp_path))
    vault = Vault(engine, load_key_ring(TEST_KEYS, tmp_path).ring)
    try:
        yield vault
    finally:
        await engine.dispose()


@pytest.fixture
def driver(live_service: LiveService, http: httpx2.AsyncClient, db_vault: Vault) -> Driver:
    return Driver(live_service, http, db_vault)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record at DEBUG, uvicorn's own (non-propagating) loggers included."""
    caplog.set_level(logging.DEBUG)
    extra = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg, lg.level) for lg in extra]
    for logger in extra:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        for logger, level in saved:
            logger.setLevel(level)
            logger.removeHandler(caplog.handler)


def with_params(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (a value) or removed (None)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def other_provider(provider: str) -> str:
    return next(n for n in Platform if n != provider)


def assert_clean(text_: str, secrets_: set[str], where: str) -> None:
    # Counted, never shown: a failing assertion must not print the secrets it found.
    leaked = sum(1 for s in secrets_ if s and s in text_)
    assert leaked == 0, f"{leaked} secret(s) found in {where}"


# -- the end-to-end test ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", Platform)
async def test_end_to_end(
    provider: str, driver: Driver, all_logs: pytest.LogCaptureFixture
) -> None:
    live = driver.live
    simulator = live.simulator(provider)
    driver.secrets.update({SERVICE_API_KEY, simulator.app.client_secret})

    # Connect: session, approval, callback, success page.
    connection = await driver.connect(provider)
    cid = connection["id"]
    assert connection["provider"] == provider
    assert connection["status"] == "active"
    assert connection["end_user_id"] == "merchant-1"
    assert connection["version"] == 1
    assert await driver.kinds(cid) == ["connected"]
    first = await driver.stored(cid)

    # Token fetch: the stored token, accepted by the platform.
    answer = await driver.token(cid)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    token = answer.json()
    assert token["access_token"] == first.access_token
    assert token["provider"] == provider
    assert token["account_id"] == connection["account_id"]
    assert token["connection_id"] == cid
    await driver.token_works(provider, token["access_token"], connection["account_id"])

    if provider == "ecwid":
        # Ecwid tokens never expire: nothing to refresh, ever.
        assert token["expires_at"] is None
        assert first.refresh_token is None
        again = await driver.token(cid)
        assert again.json() == token
        forced = await driver.api("POST", f"/v1/connections/{cid}/refresh")
        assert forced.status_code == 409, forced.text
        assert forced.json()["error"]["code"] == "not_refreshable"
        assert "do not expire" in forced.json()["error"]["message"]
        assert "refreshed" not in await driver.kinds(cid)
        version = 1
    else:
        assert token["expires_at"] is not None
        assert datetime.fromisoformat(token["expires_at"]) > datetime.now(UTC)
        # Forced expiry, then the token fetch refreshes once.
        await driver.expire(cid)
        answer = await driver.token(cid)
        assert answer.status_code == 200, answer.text
        refreshed = answer.json()
        assert refreshed["access_token"] != token["access_token"]
        assert datetime.fromisoformat(refreshed["expires_at"]) > datetime.now(UTC) + timedelta(
            minutes=5
        )
        await driver.token_works(provider, refreshed["access_token"], connection["account_id"])
        second = await driver.remember_tokens(cid)
        assert second.access_token == refreshed["access_token"]
        assert second.refresh_token is not None
        assert second.refresh_token != first.refresh_token  # the rotated one is stored
        assert second.refresh_token in simulator.refresh_tokens  # type: ignore[attr-defined]
        assert second.connection.version == 2
        assert second.connection.last_refreshed_at is not None
        assert await driver.kinds(cid) == ["connected", "refreshed"]
        # Served from then on without another refresh.
        again = await driver.token(cid)
        assert again.json()["access_token"] == refreshed["access_token"]
        assert await driver.kinds(cid) == ["connected", "refreshed"]
        version = 2

    # Reconnect the same store: the same connection, updated.
    callback, _ = await driver.approve(provider)
    done = await driver.http.get(callback)
    assert done.status_code == 200, done.text
    assert "reconnected" in done.text
    listed = await driver.api("GET", "/v1/connections")
    [again_connection] = listed.json()["data"]
    assert again_connection["id"] == cid
    assert again_connection["version"] == version + 1
    assert (await driver.kinds(cid))[-1] == "reconnected"
    third = await driver.remember_tokens(cid)
    fetched = await driver.token(cid)
    assert fetched.json()["access_token"] == third.access_token
    await driver.token_works(provider, third.access_token, connection["account_id"])

    # Every bad callback: its status, a clear page, and nothing written.
    before = await driver.snapshot()

    async def refused(url: str, status: int, words: str) -> None:
        page = await driver.http.get(url)
        assert page.status_code == status, (url, page.text)
        assert page.headers["content-type"].startswith("text/html")
        assert FAILED_TITLE in page.text
        assert words in page.text
        assert_clean(page.text, driver.secrets, "the error page")
        assert await driver.snapshot() == before

    # Reused state: the reconnect's own callback, replayed.
    await refused(callback, 403, "already completed")

    declined, _ = await driver.approve(provider, button="Deny")
    assert callback_params(declined)["error"] == "access_denied"
    await refused(declined, 400, "declined")

    good, _ = await driver.approve(provider)
    if provider != "ecwid":
        # On Ecwid a callback without state is an App Market install (test_app_market.py).
        await refused(with_params(good, state=None), 400, "no state")
    await refused(with_params(good, state=secrets.token_urlsafe(32)), 403, "not one we issued")
    await refused(with_params(good, code=None), 400, "no authorization code")
    # The missing-code attempt used the state up: it cannot be tried again.
    await refused(good, 403, "already completed")

    expired, session = await driver.approve(provider)
    await driver.expire_state(session["id"])
    await refused(expired, 403, "took too long")

    simulator.faults.set("token", Fault(status=500))
    failing, _ = await driver.approve(provider)
    await refused(failing, 502, "failed while connecting")
    simulator.faults.clear()

    wrong, _ = await driver.approve(provider)
    wrong_path = wrong.replace(
        f"/oauth/callback/{provider}", f"/oauth/callback/{other_provider(provider)}"
    )
    await refused(wrong_path, 400, "does not belong to this platform")
    nowhere = wrong.replace(f"/oauth/callback/{provider}", "/oauth/callback/nowhere")
    unknown = await driver.http.get(nowhere)
    assert unknown.status_code == 404
    assert await driver.snapshot() == before
    # Neither used the state up: the real callback still completes.
    assert (await driver.http.get(wrong)).status_code == 200

    # No token in the database, and no secret in any log line.
    stored = await driver.database_text()
    tokens = {s for s in driver.secrets if s not in (SERVICE_API_KEY,)}
    assert first.access_token in tokens
    assert_clean(stored, tokens, "the database")
    assert all_logs.records, "no log record captured: the check below would prove nothing"
    leaking = sorted(
        {r.name for r in all_logs.records if any(s in r.getMessage() for s in driver.secrets)}
    )
    assert not leaking, f"secrets logged by {leaking}"
    assert_clean(all_logs.text, driver.secrets, "the logs")


async def test_concurrent_token_requests_refresh_once(driver: Driver) -> None:
    """N callers asking for an expired token at once: one refresh, the same new token for all."""
    for provider in REFRESHABLE:
        simulator = driver.live.simulator(provider)
        # Every access token the simulator hands out lands here: one more per refresh.
        name = "access_tokens" if hasattr(simulator, "access_tokens") else "tokens"
        issued: dict[str, Any] = getattr(simulator, name)
        connection = await driver.connect(provider, login=f"busy-{provider}")
        cid = connection["id"]
        await driver.expire(cid)
        before = len(issued)
        answers = await asyncio.gather(*(driver.token(cid) for _ in range(20)))
        assert [a.status_code for a in answers] == [200] * 20
        assert len({a.json()["access_token"] for a in answers}) == 1
        assert len(issued) == before + 1, f"{provider}: {len(issued) - before} refreshes"
        assert (await driver.kinds(cid)).count("refreshed") == 1
