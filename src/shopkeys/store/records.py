"""What the vault hands out: plain immutable records, never ORM rows or ciphertexts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ACTIVE = "active"
NEEDS_REAUTH = "needs_reauth"
REVOKED = "revoked"
STATUSES = (ACTIVE, NEEDS_REAUTH, REVOKED)


@dataclass(frozen=True, slots=True)
class Connection:
    """A connection as operators and apps see it: everything but the tokens."""

    id: str
    provider: str
    account_id: str
    account_name: str | None
    end_user_id: str | None
    status: str
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    scopes: list[str]
    shops: list[dict[str, Any]]
    metadata: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    last_refreshed_at: datetime | None
    refresh_failures: int
    last_error: str | None
    #: Whether a refresh token is stored: False for tokens that never expire and for grants the
    #: platform issued without a usable refresh token.
    refreshable: bool = True
    #: When the merchant last connected the store (connect, reconnect, install or import).
    connected_at: datetime | None = None
    #: When the refresh engine refreshes it next (None: nothing to refresh).
    next_refresh_at: datetime | None = None
    #: The kind of the last refresh failure (`temporary`, `rate_limited`, ...), if any.
    last_error_kind: str | None = None
    #: Nobody asks the platform for a new token before this (its `Retry-After`, a backoff).
    blocked_until: datetime | None = None
    #: The deadline the app was last told about in a `reauth_due` event.
    reauth_notified_for: datetime | None = None
    #: Which instance holds the connection's refresh lease, and until when.
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """A connection with its decrypted tokens."""

    connection: Connection
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    public_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuthSession:
    """A connect session: who is connecting which platform, and where to send them after."""

    id: str
    provider: str
    end_user_id: str | None
    return_to: str | None
    created_at: datetime
    expires_at: datetime
    state_expires_at: datetime | None
    consumed_at: datetime | None
    connection_id: str | None
    #: The hash of the cookie of the browser that opened the link, when one did.
    browser_hash: str | None = None
    #: A grant is waiting for the browser that opened the link to confirm it.
    waiting: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    connection_id: str | None
    provider: str
    kind: str
    detail: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None
