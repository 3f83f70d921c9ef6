"""Settings: the environment names from the issue, "not configured" platforms, `.env` files."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopkeys.config import DEFAULT_PUBLIC_URL, Settings
from shopkeys.credentials import PROVIDER_NAMES

ALL_ENV = {
    "SHOPKEYS_ALIEXPRESS_APP_KEY": "ae-key",
    "SHOPKEYS_ALIEXPRESS_APP_SECRET": "ae-secret",
    "SHOPKEYS_TIKTOK_SHOP_APP_KEY": "tt-key",
    "SHOPKEYS_TIKTOK_SHOP_APP_SECRET": "tt-secret",
    "SHOPKEYS_TIKTOK_SHOP_SERVICE_ID": "tt-service",
    "SHOPKEYS_SHOPLINE_CLIENT_ID": "sl-id",
    "SHOPKEYS_SHOPLINE_CLIENT_SECRET": "sl-secret",
    "SHOPKEYS_ECWID_CLIENT_ID": "ec-id",
    "SHOPKEYS_ECWID_CLIENT_SECRET": "ec-secret",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SHOPKEYS_ variable and no `.env` from the developer's shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("SHOPKEYS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ALL_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    expected = {
        "aliexpress": ("ae-key", "ae-secret", None),
        "tiktok_shop": ("tt-key", "tt-secret", "tt-service"),
        "shopline": ("sl-id", "sl-secret", None),
        "ecwid": ("ec-id", "ec-secret", None),
    }
    for provider, (client_id, secret, service_id) in expected.items():
        credentials = settings.credentials(provider)
        assert credentials is not None, provider
        assert (credentials.client_id, credentials.client_secret, credentials.service_id) == (
            client_id,
            secret,
            service_id,
        )
        # Secrets never show in a repr of the settings or of the credentials.
        assert secret not in repr(credentials)
        assert secret not in repr(settings)


def test_platforms_without_credentials_are_not_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOPKEYS_SHOPLINE_CLIENT_ID", "sl-id")  # the secret is missing
    monkeypatch.setenv("SHOPKEYS_ECWID_CLIENT_SECRET", "ec-secret")  # the id is missing
    monkeypatch.setenv("SHOPKEYS_ALIEXPRESS_APP_KEY", "ae-key")
    monkeypatch.setenv("SHOPKEYS_ALIEXPRESS_APP_SECRET", "")  # set but empty
    settings = Settings()
    for provider in PROVIDER_NAMES:
        assert settings.credentials(provider) is None, provider


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # `FOO=` in a shell or a .env template means "not set", not "set to nothing".
    monkeypatch.setenv("SHOPKEYS_SHOPLINE_SCOPES", "")
    monkeypatch.setenv("SHOPKEYS_SHOPLINE_BASE_URL", "")
    monkeypatch.setenv("SHOPKEYS_ENCRYPTION_KEYS", "")
    monkeypatch.setenv("SHOPKEYS_DATABASE_URL", "")
    monkeypatch.setenv("SHOPKEYS_PUBLIC_URL", "")
    settings = Settings()
    assert settings.scopes("shopline") is None
    assert settings.base_url("shopline") is None
    assert settings.encryption_keys is None
    assert settings.database_url is None
    assert settings.public_url == DEFAULT_PUBLIC_URL


def test_base_urls_and_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SHOPKEYS_TIKTOK_SHOP_BASE_URL", "http://127.0.0.1:9000/sandbox/tiktok_shop/"
    )
    monkeypatch.setenv("SHOPKEYS_ECWID_BASE_URL", "https://ecwid.example")
    monkeypatch.setenv("SHOPKEYS_SHOPLINE_SCOPES", "read_products, read_orders write_orders")
    monkeypatch.setenv("SHOPKEYS_ECWID_SCOPES", "read_store_profile")
    settings = Settings()
    assert settings.base_url("tiktok_shop") == "http://127.0.0.1:9000/sandbox/tiktok_shop"
    assert settings.base_url("ecwid") == "https://ecwid.example"
    assert settings.base_url("aliexpress") is None
    assert settings.scopes("shopline") == ["read_products", "read_orders", "write_orders"]
    assert settings.scopes("ecwid") == ["read_store_profile"]
    assert settings.scopes("aliexpress") is None


def test_defaults() -> None:
    settings = Settings()
    assert settings.public_url == DEFAULT_PUBLIC_URL == "http://127.0.0.1:8000"
    assert settings.data_dir == Path(".shopkeys")
    assert settings.database_url is None
    assert settings.encryption_keys is None


def test_redirect_uri_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPKEYS_PUBLIC_URL", "https://keys.example.com/")
    settings = Settings()
    assert settings.redirect_uri("ecwid") == "https://keys.example.com/oauth/callback/ecwid"
    assert (
        settings.redirect_uri("tiktok_shop")
        == "https://keys.example.com/oauth/callback/tiktok_shop"
    )
    assert Settings(public_url="http://h:1").redirect_uri("aliexpress") == (
        "http://h:1/oauth/callback/aliexpress"
    )


def test_public_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("SHOPKEYS_PUBLIC_URL", "keys.example.com")
    with pytest.raises(ValidationError, match="http"):
        Settings()


def test_unknown_platform_is_refused() -> None:
    settings = Settings()
    for method in (settings.credentials, settings.base_url, settings.scopes, settings.redirect_uri):
        with pytest.raises(KeyError, match="unknown provider"):
            method("shopify")


def test_return_to_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPKEYS_PUBLIC_URL", "https://keys.example.com")
    monkeypatch.setenv("SHOPKEYS_RETURN_TO_ORIGINS", "https://app.example.com/, https://b.example")
    assert Settings().allowed_return_origins() == [
        "https://keys.example.com",
        "https://app.example.com",
        "https://b.example",
    ]


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text(
        "SHOPKEYS_SHOPLINE_CLIENT_ID=from-dotenv\n"
        "SHOPKEYS_SHOPLINE_CLIENT_SECRET=dotenv-secret\n"
        "SHOPKEYS_DATA_DIR=/var/lib/shopkeys\n"
        "SHOPKEYS_PUBLIC_URL=https://dotenv.example\n"
        "UNRELATED=1\n"
    )
    settings = Settings()
    credentials = settings.credentials("shopline")
    assert credentials is not None
    assert (credentials.client_id, credentials.client_secret) == ("from-dotenv", "dotenv-secret")
    assert settings.data_dir == Path("/var/lib/shopkeys")
    assert settings.redirect_uri("shopline") == "https://dotenv.example/oauth/callback/shopline"
    # The environment wins over the file.
    monkeypatch.setenv("SHOPKEYS_SHOPLINE_CLIENT_ID", "from-env")
    override = Settings().credentials("shopline")
    assert override is not None and override.client_id == "from-env"
