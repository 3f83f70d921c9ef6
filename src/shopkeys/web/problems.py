"""How the use cases' exceptions become API answers."""

from __future__ import annotations

from starlette.responses import JSONResponse

from shopkeys.connect import ConnectError
from shopkeys.errors import AuthorizationDead, NotSupported, ProviderError, RateLimited
from shopkeys.refresh import ConnectionNotFound, ConnectionUnusable, NotRefreshable
from shopkeys.store.repository import VersionConflict
from shopkeys.web.errors import ApiError, error_response


def problem_response(exc: Exception) -> JSONResponse:
    """The JSON error for an exception from the flows; unknown exceptions are re-raised."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message)
    if isinstance(exc, ConnectionNotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, NotRefreshable):
        return error_response(409, "not_refreshable", str(exc))
    if isinstance(exc, ConnectionUnusable):
        return error_response(409, "needs_reauth", str(exc))
    if isinstance(exc, AuthorizationDead):
        return error_response(
            409, "needs_reauth", f"the platform says the authorization is dead: {exc}"
        )
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else {}
        return error_response(429, "rate_limited", str(exc), **headers)
    if isinstance(exc, ProviderError):
        return error_response(502, "platform_error", str(exc))
    if isinstance(exc, NotSupported):
        return error_response(400, "not_supported", str(exc))
    if isinstance(exc, ConnectError):
        return error_response(exc.status, exc.reason, exc.message)
    if isinstance(exc, VersionConflict):
        # Other writers changed the connection through every retry: nothing was written, and the
        # same request again should succeed. The message is ours: the exception may hold an id.
        return error_response(
            409, "conflict", "the connection changed while this request wrote it; try again"
        )
    raise exc
