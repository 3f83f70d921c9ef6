"""What a failed refresh leaves behind: its kind, its text without secrets, and the error that
callers arriving while it holds get instead of calling the platform again."""

from __future__ import annotations

from datetime import datetime

from shopkeys.errors import (
    AuthorizationDead,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.redact import redact
from shopkeys.store.records import Connection, StoredTokens


def kind_of(exc: ProviderError) -> str:
    """The kind stored on the connection for `exc`, which callers arriving later share."""
    if isinstance(exc, AuthorizationDead):
        return "needs_reauth"
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, RequestRejected):
        return "rejected"
    return "temporary"


def shared_failure(connection: Connection, now: datetime) -> ProviderError:
    """The failure another caller met moments ago, raised again for this one without a call."""
    message = connection.last_error or "the last refresh failed"
    # The stored text already names the platform and the endpoint, which the error adds again.
    message = message.removeprefix(f"{connection.provider} refresh: ")
    kind = connection.last_error_kind
    blocked = connection.blocked_until
    left = max((blocked - now).total_seconds(), 1.0) if blocked else None
    endpoint = "refresh"
    if kind == "rate_limited":
        return RateLimited(
            message, provider=connection.provider, endpoint=endpoint, retry_after=left
        )
    if kind == "rejected":
        return RequestRejected(message, provider=connection.provider, endpoint=endpoint)
    return TemporaryFailure(message, provider=connection.provider, endpoint=endpoint)


def failure_text(exc: ProviderError, stored: StoredTokens) -> str:
    """What a failed refresh stores and shows: the error, without the connection's tokens.

    The provider has cleaned its own message of what it sent; this also catches the access token,
    which a refresh does not send but the platform knows and may echo back.
    """
    return redact(str(exc), known=(stored.refresh_token, stored.access_token))
