"""What every provider returns, whatever the platform's wire format."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Grant:
    """A normalized token response.

    Expiries are absolute and timezone-aware UTC; `None` means the platform says it never expires.
    `refresh_token` is None where the grant cannot be refreshed. `public_token` is a second,
    read-only token some platforms issue beside the access token (Ecwid's storefront token).
    `raw` is the platform's response with every token removed, kept for operators and debugging.
    """

    provider: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    scopes: list[str]
    account_id: str
    account_name: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    public_token: str | None = field(default=None, repr=False)

    def access_seconds_left(self, now: datetime) -> float | None:
        """Seconds until the access token expires, or None when it does not expire."""
        if self.access_expires_at is None:
            return None
        return (self.access_expires_at - now).total_seconds()


@dataclass(frozen=True, slots=True)
class Shop:
    """A shop or store that an authorization covers (TikTok Shop can cover several)."""

    id: str
    name: str | None = None
    region: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Account:
    """Who authorized us on the platform, and which shops that gives access to."""

    account_id: str
    name: str | None
    shops: list[Shop] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
