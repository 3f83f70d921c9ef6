"""The provider registry and what every provider shares."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shopkeys.credentials import AppCredentials
from shopkeys.errors import NotSupported
from shopkeys.platform import Platform
from shopkeys.providers import Provider, get


def test_registry_knows_the_four_platforms() -> None:
    assert list(Platform) == ["aliexpress", "tiktok_shop", "shopline", "ecwid"]
    for name in Platform:
        cls = get(name)
        assert issubclass(cls, Provider)
        assert cls.name is name
        # Found by its name as the URLs, settings and database spell it, too.
        assert get(name.value) is cls
    assert Platform.known("ecwid") and not Platform.known("shopify")


def test_every_provider_says_what_it_calls_its_credentials() -> None:
    names = {p: get(p).credential_names for p in Platform}
    assert (names["aliexpress"].client_id, names["aliexpress"].client_secret) == (
        "app_key",
        "app_secret",
    )
    assert names["tiktok_shop"].service_id == "service_id"
    assert names["shopline"].client_id == names["ecwid"].client_id == "client_id"
    assert [p for p in Platform if names[p].service_id] == ["tiktok_shop"]


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: aliexpress, tiktok_shop, shopline, ecwid"):
        get("shopify")


@pytest.mark.parametrize("name", Platform)
def test_no_secret_in_repr(name: str) -> None:
    provider = get(name)(AppCredentials("app-id", "TOPSECRETVALUE", service_id="svc"))
    assert "TOPSECRETVALUE" not in repr(provider)
    assert "TOPSECRETVALUE" not in repr(provider.credentials)
    assert "TOPSECRETVALUE" not in repr(provider.auth("ACCESSTOKENVALUE"))
    assert "ACCESSTOKENVALUE" not in repr(provider.auth("ACCESSTOKENVALUE"))


@pytest.mark.parametrize("name", Platform)
def test_base_url_replaces_every_host(name: str) -> None:
    provider = get(name)(
        AppCredentials("app-id", "s", service_id="svc"), base_url="http://127.0.0.1:1/sandbox/x/"
    )
    for role in provider.default_hosts:
        assert provider.url(role, "/p") == "http://127.0.0.1:1/sandbox/x/p"
    assert provider.platform_path("/sandbox/x/api/y") == "/api/y"
    assert provider.platform_path("/elsewhere") == "/elsewhere"


def test_only_ecwid_cannot_refresh() -> None:
    assert [n for n in Platform if not get(n).refreshable] == ["ecwid"]


@pytest.mark.parametrize("name", Platform)
def test_every_provider_states_its_token_lifetimes(name: str) -> None:
    cls = get(name)
    # Stated by the platform's own class: the base class has no default to fall back on.
    assert "default_access_lifetime" in vars(cls) and "renews_refresh_token" in vars(cls)
    # A missing expiry means "never expires" only where tokens never expire, which is where
    # there is nothing to refresh.
    assert (cls.default_access_lifetime is None) == (not cls.refreshable)


def test_documented_lifetimes_and_renewal() -> None:
    lifetimes = {p: get(p).default_access_lifetime for p in Platform}
    assert lifetimes == {
        "aliexpress": timedelta(days=30),
        "tiktok_shop": timedelta(days=7),
        "shopline": timedelta(seconds=15778476),
        "ecwid": None,
    }
    assert [p for p in Platform if get(p).renews_refresh_token] == ["shopline"]


async def test_ecwid_refresh_says_tokens_do_not_expire() -> None:
    provider = get("ecwid")(AppCredentials("id", "secret"))
    with pytest.raises(NotSupported, match="do not expire"):
        await provider.refresh(None, "anything")  # type: ignore[arg-type]
