"""What asking for a token gives: a `FreshToken`, or the reason there is none; and how a
refresh ended (`Outcome`), for metrics, the scheduler and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from shopkeys.errors import ShopkeysError
from shopkeys.store.records import Connection, StoredTokens


class ConnectionNotFound(ShopkeysError):
    """No connection has that id."""


class NotRefreshable(ShopkeysError):
    """An explicit refresh of a connection that has nothing to refresh."""

    def __init__(self, connection: Connection, message: str) -> None:
        super().__init__(message)
        self.connection = connection


class ConnectionUnusable(ShopkeysError):
    """The connection exists but cannot give a token (it needs re-authorization, or was revoked)."""

    def __init__(self, connection: Connection, message: str) -> None:
        super().__init__(message)
        self.connection = connection


@dataclass(frozen=True, slots=True)
class FreshToken:
    """An access token with enough life left, and what an app needs to use it."""

    connection_id: str
    provider: str
    account_id: str
    access_token: str = field(repr=False)
    expires_at: datetime | None
    public_token: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, stored: StoredTokens) -> FreshToken:
        """The stored connection's access token as handed out."""
        connection = stored.connection
        return cls(
            connection_id=connection.id,
            provider=connection.provider,
            account_id=connection.account_id,
            access_token=stored.access_token,
            expires_at=connection.access_expires_at,
            public_token=stored.public_token,
        )

    def to_json(self) -> dict[str, Any]:
        """What apps receive: the token endpoint's body, and `shopkeys token --format json`."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "provider": self.provider,
            "account_id": self.account_id,
            "connection_id": self.connection_id,
        }
        if self.public_token:
            body["public_token"] = self.public_token
        return body


class Outcome(Enum):
    """How one refresh attempt ended, for metrics and the scheduler's report."""

    REFRESHED = "refreshed"
    #: Another caller or instance refreshed it; its token was handed out.
    JOINED = "joined"
    #: Nothing to do: still has life, no longer due, or held by another instance.
    SKIPPED = "skipped"
    TEMPORARY_FAILURE = "temporary_failure"
    RATE_LIMITED = "rate_limited"
    NEEDS_REAUTH = "needs_reauth"
