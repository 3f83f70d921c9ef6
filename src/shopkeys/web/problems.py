"""How the use cases' exceptions become API answers: one table of HTTP statuses.

The flows raise kinds of refusal and know nothing of HTTP; this is the one place that says which
status each kind is. A class not in the table is looked up by its bases, so a new subclass gets
its parent's status until it is given its own.
"""

from __future__ import annotations

import math

from starlette.responses import JSONResponse

from shopkeys.errors import (
    AuthorizationDead,
    BadApiCall,
    NotSupported,
    ProviderError,
    RateLimited,
)
from shopkeys.flow_errors import (
    AlreadyCompleted,
    FlowError,
    IncompleteConfiguration,
    InvalidRequest,
    LinkClosed,
    NotConfigured,
    PlatformRefused,
    StateRejected,
    UnknownLink,
    WrongBrowser,
)
from shopkeys.proxy import BadPath, PlatformTimeout, PlatformUnreachable
from shopkeys.refresh import ConnectionNotFound, ConnectionUnusable, NotRefreshable
from shopkeys.store.repository import VersionConflict
from shopkeys.web.errors import ApiError, error_response

#: Each kind of failure: (HTTP status, the code apps see, or None for the exception's own).
STATUSES: dict[type[Exception], tuple[int, str | None]] = {
    # What a use case refuses.
    InvalidRequest: (400, None),
    StateRejected: (403, None),
    NotConfigured: (404, None),
    UnknownLink: (404, None),
    IncompleteConfiguration: (409, None),
    WrongBrowser: (409, None),
    AlreadyCompleted: (409, None),
    LinkClosed: (410, None),
    PlatformRefused: (502, None),
    # What the token service refuses.
    ConnectionNotFound: (404, "not_found"),
    NotRefreshable: (409, "not_refreshable"),
    ConnectionUnusable: (409, "needs_reauth"),
    # What the proxy refuses, or meets.
    BadPath: (400, "bad_path"),
    BadApiCall: (400, "bad_api_call"),
    PlatformTimeout: (504, "platform_timeout"),
    PlatformUnreachable: (502, "platform_unreachable"),
    # What the store refuses.
    VersionConflict: (409, "conflict"),
    # What a platform answered.
    NotSupported: (400, "not_supported"),
    AuthorizationDead: (409, "needs_reauth"),
    RateLimited: (429, "rate_limited"),
    ProviderError: (502, "platform_error"),
}

#: Messages of our own where the exception's text is not meant for apps.
_MESSAGES: dict[type[Exception], str] = {
    # Other writers changed the connection through every retry: nothing was written, and the
    # same request again should succeed. The exception itself may hold an id.
    VersionConflict: "the connection changed while this request wrote it; try again",
}


def status_of(exc: Exception) -> tuple[int, str] | None:
    """The HTTP status and code for `exc`, or None when it is not a failure the table knows."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code
    for kind in type(exc).__mro__:
        entry = STATUSES.get(kind)
        if entry is not None:
            status, code = entry
            if code is None:
                code = exc.reason if isinstance(exc, FlowError) else "error"
            return status, code
    return None


def problem_response(exc: Exception) -> JSONResponse:
    """The JSON error for an exception from the flows; unknown exceptions are re-raised."""
    found = status_of(exc)
    if found is None:
        raise exc
    status, code = found
    message = _message(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited) and exc.retry_after:
        # Rounded up: waiting a little less than asked is asking to be refused again.
        headers["Retry-After"] = str(math.ceil(exc.retry_after))
    return error_response(status, code, message, **headers)


def _message(exc: Exception) -> str:
    for kind in type(exc).__mro__:
        if kind in _MESSAGES:
            return _MESSAGES[kind]
    if isinstance(exc, ApiError | FlowError):
        return exc.message
    if isinstance(exc, AuthorizationDead):
        return f"the platform says the authorization is dead: {exc}"
    return str(exc)
