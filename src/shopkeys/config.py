"""Configuration from the environment or a `.env` file, all under the `SHOPKEYS_` prefix.

The service's own settings are declared here. Each platform's settings are not: they follow from
its provider class (what it calls its credentials, its host roles, whether it has regions or app
market installs), so adding a platform adds its settings, and `Settings.platform(name)` is the one
way to read them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shopkeys.credentials import AppCredentials
from shopkeys.platform import Platform
from shopkeys.providers import Provider, get

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


def _http_url(value: str | None) -> str | None:
    # Redirect URIs are built from these; a missing scheme would give the platforms a bad one.
    if value is None:
        return None
    if not value.startswith(("http://", "https://")) or value.endswith("://"):
        raise ValueError("must be an http:// or https:// URL, e.g. https://keys.example.com")
    return value


HttpUrl = Annotated[str | None, AfterValidator(_http_url)]
_KINDS: dict[str, Any] = {"text": str | None, "secret": SecretStr | None, "url": HttpUrl}


def platform_settings(provider: type[Provider]) -> Iterator[tuple[str, str]]:
    """The settings a platform has, as (name after `SHOPKEYS_{PLATFORM}_`, kind), in the order
    the docs list them. The kinds are "text", "secret" (never shown) and "url" (http or https)."""
    names = provider.credential_names
    yield names.client_id, "text"
    yield names.client_secret, "secret"
    if names.service_id:
        yield names.service_id, "text"
    yield "scopes", "text"
    yield "base_url", "text"
    for role in provider.default_hosts:
        yield f"{role}_url", "url"
    if provider.regional_hosts:
        yield "region", "text"
    if provider.installs_without_state:
        yield "install_return_url", "url"


@dataclass(frozen=True, slots=True)
class PlatformConfig:
    """One platform's settings, read and normalised once."""

    platform: Platform
    #: None when the platform is not configured (no id or no secret).
    credentials: AppCredentials | None
    #: The one URL that replaces all of the platform's hosts (a sandbox), when set.
    base_url: str | None
    #: Hosts set for single roles (`SHOPKEYS_{PLATFORM}_{ROLE}_URL`).
    hosts: Mapping[str, str]
    #: The seller region whose hosts to use, where the platform has regions.
    region: str | None
    #: Scopes to ask for; None for the provider's defaults.
    scopes: tuple[str, ...] | None
    #: The callback address to register on the platform.
    redirect_uri: str
    #: Where merchants who installed the app from the platform's app market go afterwards.
    install_return_url: str | None = None

    @property
    def configured(self) -> bool:
        return self.credentials is not None


class _ServiceSettings(BaseSettings):
    """The service's own settings (the platforms' are added below)."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPKEYS_",
        env_file=".env",
        extra="ignore",
        validate_default=True,
        # `SHOPKEYS_SHOPLINE_SCOPES=` (as a .env template leaves it) means unset, not "no scopes".
        env_ignore_empty=True,
    )

    public_url: str = DEFAULT_PUBLIC_URL
    data_dir: Path = Path(".shopkeys")
    database_url: SecretStr | None = None
    encryption_keys: SecretStr | None = None
    sandbox_api_key: SecretStr | None = None
    #: Origins that `return_to` may point at after a connection, comma-separated.
    return_to_origins: str = ""
    #: How log lines are written: "text" for people, "json" (one object a line) for log stacks.
    log_format: Literal["text", "json"] = "text"

    # The refresh engine (see the README's "Refresh policy").
    #: Whether `shopkeys serve` runs the scheduler (off when `shopkeys worker` runs it apart).
    scheduler: bool = True
    #: Seconds between the scheduler's sweeps for connections due a refresh.
    refresh_interval: float = Field(default=30.0, gt=0)
    #: Refresh when less than this share of the access token's lifetime is left...
    refresh_fraction: float = Field(default=0.2, gt=0, lt=1)
    #: ...and at least this many seconds ahead of its expiry.
    refresh_min_lead: float = Field(default=300.0, ge=0)
    #: Up to this share of the lead is taken off at random, so tokens issued together spread out.
    refresh_jitter: float = Field(default=0.1, ge=0, lt=1)
    #: How many refreshes one instance runs at once.
    refresh_concurrency: int = Field(default=16, ge=1, le=1000)
    #: Seconds a call to a platform may take before it counts as failed.
    platform_timeout: float = Field(default=30.0, gt=0)
    #: A `reauth_due` event goes out when a grant will end within this many seconds.
    reauth_warning: float = Field(default=7 * 86400.0, ge=0)

    # The signed API proxy.
    #: Whether calls through the proxy queue under a platform's published per-token rate (Ecwid:
    #: 600 a minute) instead of going out to be refused.
    proxy_pacing: bool = True
    #: Seconds a call may wait in that queue; one that would wait longer is answered 429 at once.
    proxy_max_wait: float = Field(default=30.0, ge=0)

    # Events for the app, as Standard Webhooks.
    #: Where events are POSTed; unset: events are only logged in the database.
    webhook_url: HttpUrl = None
    #: `whsec_` + base64 of the signing key; generated into the data directory when unset.
    webhook_secret: SecretStr | None = None
    #: Seconds after which an event that could not be delivered is given up.
    webhook_give_up_after: float = Field(default=3 * 86400.0, gt=0)

    #: Seconds an operator stays signed in to the web pages.
    operator_session_lifetime: float = Field(default=12 * 3600.0, gt=0)

    #: Whether `/metrics` serves Prometheus metrics, and whether it asks for an API key.
    metrics: bool = True
    metrics_require_api_key: bool = False

    # Sandbox lifetimes in seconds, overriding each simulated platform's real ones when set.
    sandbox_code_ttl: float | None = None
    sandbox_access_ttl: float | None = None
    sandbox_refresh_ttl: float | None = None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return _http_url(value) or value


def _platform_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for platform in Platform:
        for name, kind in platform_settings(get(platform)):
            fields[f"{platform.value}_{name}"] = (_KINDS[kind], None)
    return fields


if TYPE_CHECKING:
    _WithPlatforms = _ServiceSettings
else:
    # pydantic-settings reads only declared fields, so each platform's are declared from its
    # provider class; they are read through `Settings.platform`, never by attribute name.
    _WithPlatforms = create_model("_WithPlatforms", __base__=_ServiceSettings, **_platform_fields())


class Settings(_WithPlatforms):
    """Everything shopkeys reads from its environment. Unset platforms are "not configured"."""

    def platform(self, name: str) -> PlatformConfig:
        """The settings of the platform called `name` (a `KeyError` for an unknown one)."""
        platform = Platform.parse(name)
        provider = get(platform)
        names = provider.credential_names
        client_id = self._text(platform, names.client_id)
        secret = self._secret(platform, names.client_secret)
        service_id = self._text(platform, names.service_id) if names.service_id else None
        credentials = (
            AppCredentials(client_id, secret, service_id=service_id)
            if client_id and secret
            else None
        )
        base_url = self._text(platform, "base_url")
        scopes = self._text(platform, "scopes")
        region = self._text(platform, "region")
        return PlatformConfig(
            platform=platform,
            credentials=credentials,
            base_url=base_url.rstrip("/") if base_url else None,
            hosts={
                role: url.rstrip("/")
                for role in provider.default_hosts
                if (url := self._text(platform, f"{role}_url"))
            },
            region=region.strip().lower() if region and region.strip() else None,
            scopes=tuple(s for s in scopes.replace(",", " ").split() if s)
            if scopes is not None
            else None,
            redirect_uri=f"{self.public_url.rstrip('/')}/oauth/callback/{platform.value}",
            install_return_url=self._text(platform, "install_return_url"),
        )

    def platforms(self) -> list[PlatformConfig]:
        """Every platform's settings, configured or not, in the platforms' order."""
        return [self.platform(p) for p in Platform]

    def with_platform(
        self,
        name: str,
        *,
        credentials: AppCredentials | None = None,
        base_url: str | None = None,
    ) -> Settings:
        """A copy in which the platform has these credentials and this base URL (where given)."""
        platform = Platform.parse(name)
        names = get(platform).credential_names
        updates: dict[str, Any] = {}
        if base_url is not None:
            updates[f"{platform.value}_base_url"] = base_url
        if credentials is not None:
            updates[f"{platform.value}_{names.client_id}"] = credentials.client_id
            updates[f"{platform.value}_{names.client_secret}"] = SecretStr(
                credentials.client_secret
            )
            if names.service_id and credentials.service_id:
                updates[f"{platform.value}_{names.service_id}"] = credentials.service_id
        return self.model_copy(update=updates)

    def allowed_return_origins(self) -> list[str]:
        origins = [o.strip().rstrip("/") for o in self.return_to_origins.split(",") if o.strip()]
        return [self.public_url.rstrip("/"), *origins]

    def _text(self, platform: Platform, name: str) -> str | None:
        value: str | None = getattr(self, f"{platform.value}_{name}", None)
        return value or None

    def _secret(self, platform: Platform, name: str) -> str | None:
        value: SecretStr | None = getattr(self, f"{platform.value}_{name}", None)
        return (value.get_secret_value() or None) if value is not None else None


def credential_variables(name: str) -> list[str]:
    """The environment variables that configure the platform's app (what `doctor` asks for)."""
    platform = Platform.parse(name)
    names = get(platform).credential_names
    prefix = f"SHOPKEYS_{platform.value.upper()}_"
    wanted = [names.client_id, names.client_secret, names.service_id]
    return [prefix + n.upper() for n in wanted if n]
