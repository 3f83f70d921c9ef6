"""What identifies an app on a platform, and what each platform calls those values."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """An app's identity on a platform. `client_id` is the app key where the platform says so."""

    client_id: str
    client_secret: str = field(repr=False)
    # TikTok Shop's authorization page is addressed by service id rather than app key.
    service_id: str | None = None


@dataclass(frozen=True, slots=True)
class CredentialNames:
    """The platform's own names for an app's credentials, which its settings are named after
    (`SHOPKEYS_{PLATFORM}_{NAME}`): an app key and secret on some, a client id and secret on
    others. `service_id` is named only where the platform has one."""

    client_id: str = "client_id"
    client_secret: str = "client_secret"
    service_id: str | None = None
