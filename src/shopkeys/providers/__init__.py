"""The platforms' protocols, one module each, found by name through `get`."""

from __future__ import annotations

from importlib import import_module

from shopkeys.credentials import PROVIDER_NAMES as NAMES
from shopkeys.credentials import AppCredentials
from shopkeys.providers.base import Provider

__all__ = ["NAMES", "AppCredentials", "Provider", "get"]

_CLASSES = {
    "aliexpress": "AliExpress",
    "tiktok_shop": "TikTokShop",
    "shopline": "Shopline",
    "ecwid": "Ecwid",
}


def get(name: str) -> type[Provider]:
    """The provider class registered under `name`; a clear `KeyError` lists the known names."""
    try:
        class_name = _CLASSES[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(NAMES)}") from None
    cls: type[Provider] = getattr(import_module(f"shopkeys.providers.{name}"), class_name)
    return cls
