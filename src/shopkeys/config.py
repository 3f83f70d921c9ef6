"""Configuration from the environment or a `.env` file, all under the `SHOPKEYS_` prefix."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shopkeys.credentials import PROVIDER_NAMES as NAMES
from shopkeys.credentials import AppCredentials

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


class Settings(BaseSettings):
    """Everything shopkeys reads from its environment. Unset platforms are "not configured"."""

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

    # Sandbox lifetimes in seconds, overriding each simulated platform's real ones when set.
    sandbox_code_ttl: float | None = None
    sandbox_access_ttl: float | None = None
    sandbox_refresh_ttl: float | None = None

    aliexpress_app_key: str | None = None
    aliexpress_app_secret: SecretStr | None = None
    aliexpress_scopes: str | None = None
    aliexpress_base_url: str | None = None

    tiktok_shop_app_key: str | None = None
    tiktok_shop_app_secret: SecretStr | None = None
    tiktok_shop_service_id: str | None = None
    tiktok_shop_scopes: str | None = None
    tiktok_shop_base_url: str | None = None
    #: The three hosts TikTok Shop spreads its protocol over, each replaceable on its own.
    tiktok_shop_authorize_url: str | None = None
    tiktok_shop_token_url: str | None = None
    tiktok_shop_api_url: str | None = None
    #: "us" sends US sellers to their own authorization page.
    tiktok_shop_region: str | None = None

    shopline_client_id: str | None = None
    shopline_client_secret: SecretStr | None = None
    shopline_scopes: str | None = None
    shopline_base_url: str | None = None

    ecwid_client_id: str | None = None
    ecwid_client_secret: SecretStr | None = None
    ecwid_scopes: str | None = None
    ecwid_base_url: str | None = None
    #: Where merchants who installed the app from the Ecwid App Market are sent afterwards.
    ecwid_install_return_url: str | None = None

    @field_validator(
        "public_url",
        "tiktok_shop_authorize_url",
        "tiktok_shop_token_url",
        "tiktok_shop_api_url",
        "ecwid_install_return_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        # Redirect URIs are built from these; a missing scheme would give the platforms a bad one.
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or value.endswith("://"):
            raise ValueError("must be an http:// or https:// URL, e.g. https://keys.example.com")
        return value

    def credentials(self, provider: str) -> AppCredentials | None:
        """The app credentials configured for `provider`, or None when it is not configured."""
        _check(provider)
        if provider in ("aliexpress", "tiktok_shop"):
            client_id = getattr(self, f"{provider}_app_key")
            secret = getattr(self, f"{provider}_app_secret")
        else:
            client_id = getattr(self, f"{provider}_client_id")
            secret = getattr(self, f"{provider}_client_secret")
        if not client_id or secret is None or not secret.get_secret_value():
            return None
        service_id = self.tiktok_shop_service_id if provider == "tiktok_shop" else None
        return AppCredentials(client_id, secret.get_secret_value(), service_id=service_id)

    def base_url(self, provider: str) -> str | None:
        """The one base URL that replaces all of `provider`'s hosts, when set."""
        _check(provider)
        value: str | None = getattr(self, f"{provider}_base_url")
        return value.rstrip("/") if value else None

    def hosts(self, provider: str, roles: Iterable[str]) -> dict[str, str]:
        """Hosts set for single roles of `provider` (`SHOPKEYS_{PLATFORM}_{ROLE}_URL`).

        `roles` are the provider's own host roles: the platform's facts stay in its provider.
        """
        _check(provider)
        hosts: dict[str, str] = {}
        for role in roles:
            value: str | None = getattr(self, f"{provider}_{role}_url", None)
            if value:
                hosts[role] = value.rstrip("/")
        return hosts

    def region(self, provider: str) -> str | None:
        """The seller region whose hosts `provider` uses, when the platform has regions."""
        _check(provider)
        value: str | None = getattr(self, f"{provider}_region", None)
        return value.strip().lower() if value and value.strip() else None

    def scopes(self, provider: str) -> list[str] | None:
        """Scopes to ask `provider` for, or None for the provider's defaults."""
        _check(provider)
        value: str | None = getattr(self, f"{provider}_scopes")
        if value is None:
            return None
        return [s for s in value.replace(",", " ").split() if s]

    def install_return_url(self, provider: str) -> str | None:
        """Where merchants go after installing the app from `provider`'s app market, if set."""
        _check(provider)
        value: str | None = getattr(self, f"{provider}_install_return_url", None)
        return value

    def redirect_uri(self, provider: str) -> str:
        """The callback address to register on the platform."""
        _check(provider)
        return f"{self.public_url.rstrip('/')}/oauth/callback/{provider}"

    def allowed_return_origins(self) -> list[str]:
        origins = [o.strip().rstrip("/") for o in self.return_to_origins.split(",") if o.strip()]
        return [self.public_url.rstrip("/"), *origins]


def _check(provider: str) -> None:
    if provider not in NAMES:
        raise KeyError(f"unknown provider {provider!r}; known: {', '.join(NAMES)}")
