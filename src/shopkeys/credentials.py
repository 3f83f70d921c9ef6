"""The platforms shopkeys speaks, and what identifies an app on each of them."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Provider names, in the order pages and tables list them.
PROVIDER_NAMES: tuple[str, ...] = ("aliexpress", "tiktok_shop", "shopline", "ecwid")


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """An app's identity on a platform. `client_id` is the app key where the platform says so."""

    client_id: str
    client_secret: str = field(repr=False)
    # TikTok Shop's authorization page is addressed by service id rather than app key.
    service_id: str | None = None
