"""The platforms shopkeys speaks: the one list every other module asks."""

from __future__ import annotations

from enum import StrEnum


class Platform(StrEnum):
    """A platform's name, as it appears in URLs, settings, the API and the database.

    The order is the order pages and tables list them. Everything else about a platform is a fact
    of its provider class (`shopkeys.providers.get(platform)`).
    """

    ALIEXPRESS = "aliexpress"
    TIKTOK_SHOP = "tiktok_shop"
    SHOPLINE = "shopline"
    ECWID = "ecwid"

    @classmethod
    def known(cls, name: str) -> bool:
        """Whether a platform is called `name` (`in Platform` takes strings only from 3.12)."""
        return name in cls._value2member_map_

    @classmethod
    def parse(cls, name: str) -> Platform:
        """The platform called `name`; a `KeyError` that lists the known names otherwise."""
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(cls)
            raise KeyError(f"unknown provider {name!r}; known: {known}") from None
