"""The platforms' protocols, one module each, named after its `Platform` and found through `get`."""

from __future__ import annotations

from importlib import import_module

from shopkeys.credentials import AppCredentials
from shopkeys.platform import Platform
from shopkeys.providers.base import Provider

__all__ = ["AppCredentials", "Platform", "Provider", "get"]


def get(name: str) -> type[Provider]:
    """The provider class of the platform called `name`; a `KeyError` lists the known names."""
    platform = Platform.parse(name)
    # Imported on first use: a command that needs one platform does not load the other three.
    cls: type[Provider] = import_module(f"shopkeys.providers.{platform.value}").PROVIDER
    return cls
