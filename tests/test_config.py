"""Settings: the environment names from the issue, "not configured" platforms, `.env` files."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from shopkeys.config import DEFAULT_PUBLIC_URL, Settings
from shopkeys.credentials import AppCredentials, CredentialNames
from shopkeys.platform import Platform
from shopkeys.providers import get

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
        credentials = settings.platform(provider).credentials
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
    for provider in Platform:
        assert settings.platform(provider).credentials is None, provider


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # `FOO=` in a shell or a .env template means "not set", not "set to nothing".
    monkeypatch.setenv("SHOPKEYS_SHOPLINE_SCOPES", "")
    monkeypatch.setenv("SHOPKEYS_SHOPLINE_BASE_URL", "")
    monkeypatch.setenv("SHOPKEYS_ENCRYPTION_KEYS", "")
    monkeypatch.setenv("SHOPKEYS_DATABASE_URL", "")
    monkeypatch.setenv("SHOPKEYS_PUBLIC_URL", "")
    settings = Settings()
    assert settings.platform("shopline").scopes is None
    assert settings.platform("shopline").base_url is None
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
    assert settings.platform("tiktok_shop").base_url == "http://127.0.0.1:9000/sandbox/tiktok_shop"
    assert settings.platform("ecwid").base_url == "https://ecwid.example"
    assert settings.platform("aliexpress").base_url is None
    assert settings.platform("shopline").scopes == ("read_products", "read_orders", "write_orders")
    assert settings.platform("ecwid").scopes == ("read_store_profile",)
    assert settings.platform("aliexpress").scopes is None


def test_defaults() -> None:
    settings = Settings()
    assert settings.public_url == DEFAULT_PUBLIC_URL == "http://127.0.0.1:8000"
    assert settings.data_dir == Path(".shopkeys")
    assert settings.database_url is None
    assert settings.encryption_keys is None


def test_redirect_uri_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPKEYS_PUBLIC_URL", "https://keys.example.com/")
    settings = Settings()
    assert (
        settings.platform("ecwid").redirect_uri == "https://keys.example.com/oauth/callback/ecwid"
    )
    assert (
        settings.platform("tiktok_shop").redirect_uri
        == "https://keys.example.com/oauth/callback/tiktok_shop"
    )
    assert Settings(public_url="http://h:1").platform("aliexpress").redirect_uri == (
        "http://h:1/oauth/callback/aliexpress"
    )


def test_public_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPKEYS_PUBLIC_URL", "keys.example.com")
    with pytest.raises(ValidationError, match="http"):
        Settings()


def test_unknown_platform_is_refused() -> None:
    settings = Settings()
    with pytest.raises(KeyError, match="unknown provider 'shopify'; known: aliexpress, "):
        settings.platform("shopify")
    with pytest.raises(KeyError, match="unknown provider"):
        settings.with_platform("shopify", base_url="https://x.example")


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
    credentials = settings.platform("shopline").credentials
    assert credentials is not None
    assert (credentials.client_id, credentials.client_secret) == ("from-dotenv", "dotenv-secret")
    assert settings.data_dir == Path("/var/lib/shopkeys")
    assert (
        settings.platform("shopline").redirect_uri
        == "https://dotenv.example/oauth/callback/shopline"
    )
    # The environment wins over the file.
    monkeypatch.setenv("SHOPKEYS_SHOPLINE_CLIENT_ID", "from-env")
    override = Settings().platform("shopline").credentials
    assert override is not None and override.client_id == "from-env"


# -- single hosts, regions, the Ecwid install return URL, and the providers built from them ------


def test_tiktok_shop_hosts_replace_single_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_AUTHORIZE_URL", "https://authorize.example/")
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_TOKEN_URL", "https://token.example//")
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_API_URL", "http://127.0.0.1:9000/api/")
    # The base URL replaces every host at once: it is no role of its own.
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_BASE_URL", "http://127.0.0.1:9000/sandbox/")
    # Other `_URL` settings of a platform are not hosts either.
    monkeypatch.setenv("SHOPKEYS_ECWID_INSTALL_RETURN_URL", "https://app.example.com/welcome")
    monkeypatch.setenv("SHOPKEYS_ECWID_BASE_URL", "https://ecwid.example")
    settings = Settings()
    assert settings.platform("tiktok_shop").hosts == {
        "authorize": "https://authorize.example",
        "token": "https://token.example",
        "api": "http://127.0.0.1:9000/api",
    }
    for other in ("aliexpress", "shopline", "ecwid"):
        assert settings.platform(other).hosts == {}, other


def test_hosts_hold_only_the_roles_that_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().platform("tiktok_shop").hosts == {}
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_TOKEN_URL", "https://token.example")
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_API_URL", "")  # empty means unset
    assert Settings().platform("tiktok_shop").hosts == {"token": "https://token.example"}


@pytest.mark.parametrize(
    "variable",
    [
        "SHOPKEYS_TIKTOK_SHOP_AUTHORIZE_URL",
        "SHOPKEYS_TIKTOK_SHOP_TOKEN_URL",
        "SHOPKEYS_TIKTOK_SHOP_API_URL",
        "SHOPKEYS_ECWID_INSTALL_RETURN_URL",
    ],
)
@pytest.mark.parametrize("value", ["auth.tiktok-shops.com", "ftp://files.example", "https://"])
def test_host_and_return_urls_must_be_http(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match="http") as raised:
        Settings()
    field = variable.removeprefix("SHOPKEYS_").lower()
    assert [error["loc"] for error in raised.value.errors()] == [(field,)]


def test_region_is_lower_cased_and_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().platform("tiktok_shop").region is None
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_REGION", " US ")
    settings = Settings()
    assert settings.platform("tiktok_shop").region == "us"
    for other in ("aliexpress", "shopline", "ecwid"):
        assert settings.platform(other).region is None, other
    for blank in ("", "   "):
        monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_REGION", blank)
        assert Settings().platform("tiktok_shop").region is None, repr(blank)


def test_install_return_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().platform("ecwid").install_return_url is None
    monkeypatch.setenv("SHOPKEYS_ECWID_INSTALL_RETURN_URL", "https://app.example.com/welcome")
    settings = Settings()
    assert settings.platform("ecwid").install_return_url == "https://app.example.com/welcome"
    for other in ("aliexpress", "tiktok_shop", "shopline"):
        assert settings.platform(other).install_return_url is None, other


def _with_all_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ALL_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SHOPKEYS_PUBLIC_URL", "https://keys.example.com")


def test_built_providers_use_the_region_and_the_redirect_uri(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shopkeys.providers.tiktok_shop import SHOPS_PATH, TOKEN_GET_PATH, TOKEN_REFRESH_PATH
    from shopkeys.runtime import build_providers

    _with_all_credentials(monkeypatch)
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_REGION", "US")
    settings = Settings()
    providers = build_providers(settings)
    assert set(providers) == {"aliexpress", "tiktok_shop", "shopline", "ecwid"}

    tiktok = providers["tiktok_shop"]
    url = urlsplit(
        tiktok.authorization_url("state-1", settings.platform("tiktok_shop").redirect_uri)
    )
    assert (url.scheme, url.netloc, url.path) == (
        "https",
        "services.us.tiktokshop.com",
        "/open/authorize",
    )
    assert parse_qs(url.query) == {"service_id": ["tt-service"], "state": ["state-1"]}
    # Only the authorization page is regional: tokens and the API stay on the global hosts.
    assert tiktok.url("token", TOKEN_GET_PATH) == "https://auth.tiktok-shops.com" + TOKEN_GET_PATH
    assert tiktok.url("token", TOKEN_REFRESH_PATH).startswith("https://auth.tiktok-shops.com/")
    assert tiktok.url("api", SHOPS_PATH).startswith("https://open-api.tiktokglobalshop.com/")

    shopline = providers["shopline"]
    assert shopline.redirect_uri == settings.platform("shopline").redirect_uri
    assert shopline.redirect_uri == "https://keys.example.com/oauth/callback/shopline"


def test_built_providers_without_a_region_and_with_one_host_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shopkeys.providers.tiktok_shop import TOKEN_GET_PATH
    from shopkeys.runtime import build_providers

    _with_all_credentials(monkeypatch)
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_TOKEN_URL", "https://token.example/")
    tiktok = build_providers(Settings())["tiktok_shop"]
    assert urlsplit(tiktok.authorization_url("s", "unused")).netloc == "services.tiktokshop.com"
    assert tiktok.url("token", TOKEN_GET_PATH) == "https://token.example" + TOKEN_GET_PATH
    assert tiktok.url("api", "/x").startswith("https://open-api.tiktokglobalshop.com/")


def test_an_unknown_region_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from shopkeys.errors import ConfigurationError
    from shopkeys.runtime import build_providers

    _with_all_credentials(monkeypatch)
    monkeypatch.setenv("SHOPKEYS_TIKTOK_SHOP_REGION", "eu")
    with pytest.raises(ConfigurationError, match="region 'eu'"):
        build_providers(Settings())


# -- the platforms' settings follow from their provider classes ---------------------------------


def test_each_platform_settings_follow_its_provider_class() -> None:
    from shopkeys.config import platform_settings

    fields = set(Settings.model_fields)
    for platform in Platform:
        provider = get(platform)
        names = provider.credential_names
        expected = {
            f"{platform.value}_{names.client_id}",
            f"{platform.value}_{names.client_secret}",
        }
        expected |= {f"{platform.value}_{role}_url" for role in provider.default_hosts}
        expected |= {f"{platform.value}_scopes", f"{platform.value}_base_url"}
        if names.service_id:
            expected.add(f"{platform.value}_{names.service_id}")
        if provider.regional_hosts:
            expected.add(f"{platform.value}_region")
        if provider.installs_without_state:
            expected.add(f"{platform.value}_install_return_url")
        declared = {f"{platform.value}_{name}" for name, _ in platform_settings(provider)}
        assert declared == expected, platform
        assert declared <= fields, platform
    # The names users already set keep working.
    assert {"aliexpress_app_key", "tiktok_shop_service_id", "shopline_client_secret"} <= fields
    assert "ecwid_install_return_url" in fields and "shopline_region" not in fields


def test_a_provider_with_its_own_credential_names_gets_settings_of_those_names() -> None:
    from shopkeys.config import platform_settings
    from shopkeys.providers.shopline import Shopline

    class Renamed(Shopline):
        credential_names = CredentialNames("partner_key", "partner_secret", service_id="app_id")

    assert list(platform_settings(Renamed))[:3] == [
        ("partner_key", "text"),
        ("partner_secret", "secret"),
        ("app_id", "text"),
    ]


def test_with_platform_sets_credentials_and_base_url_under_the_platform_names() -> None:
    settings = Settings().with_platform(
        "tiktok_shop",
        credentials=AppCredentials("k", "s3cret", service_id="svc"),
        base_url="http://127.0.0.1:9/sandbox/tiktok_shop",
    )
    config = settings.platform("tiktok_shop")
    assert config.credentials == AppCredentials("k", "s3cret", service_id="svc")
    assert config.base_url == "http://127.0.0.1:9/sandbox/tiktok_shop"
    assert config.configured and not settings.platform("ecwid").configured
    assert "s3cret" not in repr(settings)
    assert [c.platform for c in settings.platforms()] == list(Platform)


def test_credential_variables_name_what_doctor_asks_for() -> None:
    from shopkeys.config import credential_variables

    assert credential_variables("tiktok_shop") == [
        "SHOPKEYS_TIKTOK_SHOP_APP_KEY",
        "SHOPKEYS_TIKTOK_SHOP_APP_SECRET",
        "SHOPKEYS_TIKTOK_SHOP_SERVICE_ID",
    ]
    assert credential_variables("ecwid") == [
        "SHOPKEYS_ECWID_CLIENT_ID",
        "SHOPKEYS_ECWID_CLIENT_SECRET",
    ]


def test_every_host_role_of_every_platform_can_be_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPKEYS_ALIEXPRESS_API_URL", "https://ae-api.example/")
    monkeypatch.setenv("SHOPKEYS_SHOPLINE_AUTH_URL", "https://sl-auth.example")
    settings = Settings()
    assert settings.platform("aliexpress").hosts == {"api": "https://ae-api.example"}
    assert settings.platform("shopline").hosts == {"auth": "https://sl-auth.example"}
