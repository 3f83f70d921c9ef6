"""Run the `shopkeys` command in-process with its own data directory and database."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from shopkeys.cli import app
from shopkeys.config import Settings
from shopkeys.connect import Completed
from shopkeys.runtime import open_runtime
from shopkeys.sandbox.browser import callback_params, press
from shopkeys.store.records import Connection
from tests.conftest import TEST_KEYS, TEST_PUBLIC_URL, LiveSandbox


@dataclass
class Cli:
    """`shopkeys` with a fixed environment; `env` may be changed between invocations."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, input: str | None = None, **env: str) -> Result:
        runner = CliRunner()
        return runner.invoke(app, list(args), env={**self.env, **env}, input=input)

    def settings(self) -> Settings:
        """The settings the command sees (read from `env` the same way)."""
        saved = dict(os.environ)
        try:
            os.environ.update(self.env)
            return Settings(_env_file=None)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def run(self, coroutine: Any) -> Any:
        return asyncio.run(coroutine)

    def point_at(self, sandbox: LiveSandbox, *providers: str) -> None:
        """Configure `providers` with the live sandbox's credentials and base URLs."""
        for name in providers:
            simulated = sandbox.simulator(name).app
            upper = name.upper()
            if name in ("aliexpress", "tiktok_shop"):
                self.env[f"SHOPKEYS_{upper}_APP_KEY"] = simulated.client_id
                self.env[f"SHOPKEYS_{upper}_APP_SECRET"] = simulated.client_secret
            else:
                self.env[f"SHOPKEYS_{upper}_CLIENT_ID"] = simulated.client_id
                self.env[f"SHOPKEYS_{upper}_CLIENT_SECRET"] = simulated.client_secret
            if simulated.service_id:
                self.env[f"SHOPKEYS_{upper}_SERVICE_ID"] = simulated.service_id
            self.env[f"SHOPKEYS_{upper}_BASE_URL"] = sandbox.base_url(name)

    def connect_via_sandbox(
        self, provider: str, *, login: str = "merchant-1", end_user: str = "u1"
    ) -> Connection:
        """Connect a sandbox store the real way: connect link, Authorize, callback."""

        async def go() -> Connection:
            import httpx2

            rt = await open_runtime(self.settings())
            try:
                link = await rt.connect.start(provider, end_user_id=end_user)
                token = _link_token(link.url)
                # The browser's cookie secret, as the link's page would have set it.
                browser = "test-browser-secret"
                authorize = await rt.connect.authorization_redirect(token, browser=browser)
                async with httpx2.AsyncClient(timeout=10) as http:
                    callback = await press(http, authorize, login=login)
                completed = await rt.connect.complete(
                    provider, callback_params(callback), browser=browser
                )
                assert isinstance(completed, Completed)
                return completed.connection
            finally:
                await rt.close()

        result: Connection = asyncio.run(go())
        return result


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """No SHOPKEYS_ variable or `.env` of the developer leaks in; SQLite in the data directory."""
    for name in list(os.environ):
        if name.startswith("SHOPKEYS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    # Wide enough that Rich never folds an id or a URL in a table.
    monkeypatch.setenv("COLUMNS", "250")
    data_dir = tmp_path / "data"
    yield Cli(
        data_dir,
        {
            "SHOPKEYS_DATA_DIR": str(data_dir),
            "SHOPKEYS_ENCRYPTION_KEYS": TEST_KEYS,
            "SHOPKEYS_PUBLIC_URL": TEST_PUBLIC_URL,
        },
    )


@pytest.fixture
def db_cli(cli: Cli, database_url: str) -> Cli:
    """The CLI on each database (SQLite and PostgreSQL)."""
    cli.env["SHOPKEYS_DATABASE_URL"] = database_url
    return cli


def _link_token(url: str) -> str:
    """The secret token of a connect link (`/connect/{token}` or `/connect?session={token}`)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return query["session"][0] if "session" in query else parts.path.rsplit("/", 1)[1]
