"""Builds the running system from settings: database, keys, providers, flows. Used by the web app
and the CLI alike, so both see the same vault the same way."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx2
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from shopkeys.api_keys import ApiKeys
from shopkeys.clock import Clock, utc_now
from shopkeys.config import Settings
from shopkeys.connect import ConnectFlow
from shopkeys.crypto import LoadedKeys, load_key_ring
from shopkeys.providers import NAMES, Provider, get
from shopkeys.refresh import TokenService
from shopkeys.store.database import create_engine, database_url, upgrade
from shopkeys.store.vault import Vault

log = logging.getLogger("shopkeys")

#: Timeouts for calls to the platforms: a slow platform must not hold a token request forever.
PLATFORM_TIMEOUT = httpx2.Timeout(20.0, connect=10.0)


@dataclass
class Runtime:
    """Everything a face (web app, CLI command) needs, opened once and closed once."""

    settings: Settings
    url: URL
    engine: AsyncEngine
    keys: LoadedKeys
    vault: Vault
    providers: dict[str, Provider]
    http: httpx2.AsyncClient
    connect: ConnectFlow
    tokens: TokenService
    api_keys: ApiKeys
    clock: Clock

    async def close(self) -> None:
        await self.http.aclose()
        await self.engine.dispose()


def build_providers(settings: Settings, clock: Clock = utc_now) -> dict[str, Provider]:
    """A provider client for every platform with credentials; the others are "not configured"."""
    providers: dict[str, Provider] = {}
    for name in NAMES:
        credentials = settings.credentials(name)
        if credentials is None:
            continue
        providers[name] = get(name)(
            credentials,
            base_url=settings.base_url(name),
            hosts=settings.hosts(name, get(name).default_hosts),
            region=settings.region(name),
            scopes=settings.scopes(name),
            redirect_uri=settings.redirect_uri(name),
            clock=clock,
        )
    return providers


async def open_runtime(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    migrate: bool = True,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> Runtime:
    """Open the database (applying migrations unless told not to), keys and clients."""
    # First: a configuration mistake must fail before anything is created or migrated.
    providers = build_providers(settings, clock)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only: it holds keys
    configured_url = settings.database_url.get_secret_value() if settings.database_url else None
    url = database_url(configured_url, settings.data_dir)
    configured_keys = (
        settings.encryption_keys.get_secret_value() if settings.encryption_keys else None
    )
    keys = load_key_ring(configured_keys, settings.data_dir)
    if keys.created:
        log.warning(
            "created a new encryption key file at %s: back it up, without it the stored tokens "
            "cannot be read (or set SHOPKEYS_ENCRYPTION_KEYS)",
            keys.path,
        )
    engine = create_engine(url)
    if migrate:
        await upgrade(engine)
    vault = Vault(engine, keys.ring, clock=clock)
    client_options: dict[str, Any] = {"timeout": PLATFORM_TIMEOUT}
    if transport is not None:
        client_options["transport"] = transport
    http = httpx2.AsyncClient(**client_options)
    connect = ConnectFlow(
        vault,
        providers,
        http,
        public_url=settings.public_url,
        redirect_uri=settings.redirect_uri,
        allowed_return_origins=settings.allowed_return_origins(),
        clock=clock,
    )
    return Runtime(
        settings=settings,
        url=url,
        engine=engine,
        keys=keys,
        vault=vault,
        providers=providers,
        http=http,
        connect=connect,
        tokens=TokenService(vault, providers, http, clock=clock),
        api_keys=ApiKeys(vault, clock=clock),
        clock=clock,
    )
