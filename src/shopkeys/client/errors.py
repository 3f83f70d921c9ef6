"""What the client raises: one class per kind of answer, built from the API's error body.

The API answers every failure with `{"error": {"code", "message"}}`; the class is chosen by the
HTTP status (and, for 409, by the code). Nothing here holds the request, whose headers carry the
API key: an exception is safe to log.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2


class ShopkeysError(Exception):
    """Anything this client raises of its own (network failures stay `httpx2.HTTPError`)."""


class ShopkeysApiError(ShopkeysError):
    """The service answered with an error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)  # the args rebuild it when unpickled
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status}, {self.code})"


class BadRequest(ShopkeysApiError):
    """400, 413 or 422: the request was refused as it is; sending it again will not help."""


class Unauthorized(ShopkeysApiError):
    """401: no API key, or one that is wrong or revoked."""


class Forbidden(ShopkeysApiError):
    """403: the API key's scope does not allow this (a `read` key on an admin route)."""


class NotFound(ShopkeysApiError):
    """404: no such connection (or end user, session, route)."""


class Conflict(ShopkeysApiError):
    """409: the request cannot be done in the connection's current state."""


class NeedsReauth(Conflict):
    """409 `needs_reauth`: the platform says the grant is dead; the merchant must connect again."""


class NotRefreshable(Conflict):
    """409 `not_refreshable`: nothing to refresh (a token that never expires, no refresh token)."""


class RateLimited(ShopkeysApiError):
    """429: the platform rate-limits the app; `retry_after` is how many seconds to wait, if said."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(status, code, message)
        self.args = (status, code, message, retry_after)
        self.retry_after = retry_after


class PlatformError(ShopkeysApiError):
    """502: the platform failed or refused (during a refresh, an import)."""


class ServerError(ShopkeysApiError):
    """Any other 5xx: the service itself failed, or something in front of it did."""


_BY_STATUS: dict[int, type[ShopkeysApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    422: BadRequest,
    429: RateLimited,
    502: PlatformError,
}

_BY_CODE: dict[str, type[ShopkeysApiError]] = {
    "needs_reauth": NeedsReauth,
    "not_refreshable": NotRefreshable,
}


def error_from_response(response: httpx2.Response, *, hide: str = "") -> ShopkeysApiError:
    """The exception for an error answer. `hide` (the API key) is blanked out of the message,
    in case anything between the app and the service ever echoes it."""
    status = response.status_code
    code, message = _error_body(response)
    if hide:
        message = message.replace(hide, "[hidden]")
    kind = _BY_CODE.get(code) if status == 409 else None
    kind = kind or _BY_STATUS.get(status) or (ServerError if status >= 500 else ShopkeysApiError)
    if kind is RateLimited:
        return RateLimited(status, code, message, _retry_after(response.headers.get("retry-after")))
    return kind(status, code, message)


def unexpected(response: httpx2.Response, why: str) -> ShopkeysApiError:
    """A success status whose body is not what the API sends (a wrong base URL, say)."""
    return ShopkeysApiError(response.status_code, "unexpected_response", why)


def _error_body(response: httpx2.Response) -> tuple[str, str]:
    """The API's (code, message), or a plain stand-in when the body is not the API's (a proxy's
    HTML page, which is not repeated: it says nothing the status does not)."""
    fallback = ("http_error", f"the service answered HTTP {response.status_code}")
    try:
        body: Any = response.json()
    except ValueError:
        return fallback
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return fallback
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        return fallback
    return code, message


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number of seconds, or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
