"""Builds the running system from settings: database, keys, providers, flows. Used by the web app
and the CLI alike, so both see the same vault the same way."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx2
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from shopkeys.api_keys import ApiKeys
from shopkeys.clock import Clock, utc_now
from shopkeys.config import PlatformConfig, Settings
from shopkeys.connect import ConnectFlow
from shopkeys.crypto import LoadedKeys, load_key_ring
from shopkeys.errors import ConfigurationError
from shopkeys.events.sender import DeliverySender, build_sender, webhook_secret_of
from shopkeys.platform import Platform
from shopkeys.providers import Provider, get
from shopkeys.proxy import ApiProxy, CallPacer
from shopkeys.refresh import TokenService
from shopkeys.refresh.scheduler import Scheduler
from shopkeys.refresh.service import new_owner
from shopkeys.refresh_plan import RefreshPlan
from shopkeys.store.database import create_engine, database_url, upgrade
from shopkeys.store.vault import Vault

log = logging.getLogger("shopkeys")

#: The longest wait for a platform's connection to open; the whole call is bounded by
#: `SHOPKEYS_PLATFORM_TIMEOUT`.
CONNECT_TIMEOUT = 10.0


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
    proxy: ApiProxy
    scheduler: Scheduler
    #: The outbox's sender; None when no webhook URL is set.
    sender: DeliverySender | None
    api_keys: ApiKeys
    clock: Clock

    async def close(self) -> None:
        await self.http.aclose()
        await self.proxy.http.aclose()
        await self.engine.dispose()


def _no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing: a cookie one merchant's call was given by a platform
    must never ride along on another's (one client serves every connection)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def database_url_of(settings: Settings) -> URL:
    """The database the settings name: SHOPKEYS_DATABASE_URL, else SQLite in the data directory."""
    configured = settings.database_url.get_secret_value() if settings.database_url else None
    return database_url(configured, settings.data_dir)


def build_providers(settings: Settings, clock: Clock = utc_now) -> dict[str, Provider]:
    """A provider client for every platform with credentials; the others are "not configured"."""
    return {
        config.platform.value: build_provider(config, clock)
        for config in settings.platforms()
        if config.configured
    }


def build_provider(config: PlatformConfig, clock: Clock = utc_now) -> Provider:
    """The client for one configured platform (a `ConfigurationError` for a bad host or region)."""
    if config.credentials is None:
        raise ConfigurationError(f"{config.platform.value} is not configured")
    return get(config.platform)(
        config.credentials,
        base_url=config.base_url,
        hosts=config.hosts,
        region=config.region,
        scopes=config.scopes,
        redirect_uri=config.redirect_uri,
        clock=clock,
    )


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
    url = database_url_of(settings)
    configured_keys = (
        settings.encryption_keys.get_secret_value() if settings.encryption_keys else None
    )
    keys = load_key_ring(configured_keys, settings.data_dir)
    webhook_secret = webhook_secret_of(settings)
    if keys.created:
        log.warning(
            "created a new encryption key file at %s: back it up, without it the stored tokens "
            "cannot be read (or set SHOPKEYS_ENCRYPTION_KEYS)",
            keys.path,
        )
    engine = create_engine(url)
    if migrate:
        await upgrade(engine)
    plan = RefreshPlan(
        fraction=settings.refresh_fraction,
        min_lead=timedelta(seconds=settings.refresh_min_lead),
        jitter=settings.refresh_jitter,
    )
    vault = Vault(engine, keys.ring, clock=clock, plan=plan, outbox=bool(settings.webhook_url))
    timeout = settings.platform_timeout
    client_options: dict[str, Any] = {
        "timeout": httpx2.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))
    }
    if transport is not None:
        client_options["transport"] = transport
    http = httpx2.AsyncClient(**client_options, cookies=_no_cookies())
    # The proxy's calls have a pool of their own: long downloads through it never hold up the
    # refreshes, whose pool is `http`'s.
    proxy_http = httpx2.AsyncClient(**client_options, cookies=_no_cookies())
    connect = ConnectFlow(
        vault,
        providers,
        http,
        public_url=settings.public_url,
        redirect_uri=lambda name: settings.platform(name).redirect_uri,
        allowed_return_origins=settings.allowed_return_origins(),
        clock=clock,
    )
    owner = new_owner()
    tokens = TokenService(
        vault,
        providers,
        http,
        clock=clock,
        owner=owner,
        call_timeout=timedelta(seconds=settings.platform_timeout),
    )
    scheduler = Scheduler(
        tokens,
        vault,
        renewing=[p.value for p in Platform if get(p).renews_refresh_token],
        clock=clock,
        interval=timedelta(seconds=settings.refresh_interval),
        concurrency=settings.refresh_concurrency,
        reauth_warning=timedelta(seconds=settings.reauth_warning),
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
        tokens=tokens,
        proxy=ApiProxy(
            tokens,
            providers,
            proxy_http,
            pacer=CallPacer(max_wait=settings.proxy_max_wait) if settings.proxy_pacing else None,
        ),
        scheduler=scheduler,
        sender=build_sender(settings, webhook_secret, vault, http, clock=clock, owner=owner),
        api_keys=ApiKeys(vault, clock=clock),
        clock=clock,
    )
