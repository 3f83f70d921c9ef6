"""One hierarchy for everything that can go wrong talking to a platform.

Callers decide what to do from the class alone: re-authorize (`AuthorizationDead`), refresh
first (`AccessExpired`), wait (`RateLimited`), retry with backoff (`TemporaryFailure`), or fix
our own request (`RequestRejected`).
Messages never carry tokens, codes, secrets or URLs with query strings.
"""

from __future__ import annotations


class ShopkeysError(Exception):
    """Base of every error shopkeys raises on purpose."""


class ConfigurationError(ShopkeysError):
    """The configuration is missing something or contradicts itself."""


class BadCallback(ShopkeysError):
    """The platform's callback lacks a parameter the code exchange needs, or carries a bad one."""


class NotSupported(ShopkeysError):
    """The platform has no such operation (Ecwid has no refresh grant, for one)."""


class ProviderError(ShopkeysError):
    """A platform answered with an error, or did not answer usably."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        endpoint: str,
        code: str | None = None,
        status: int | None = None,
        request_sent: bool = True,
    ) -> None:
        self.provider = provider
        self.endpoint = endpoint
        self.code = code
        self.status = status
        #: False only when the request surely never reached the platform (the connection was
        #: refused): a refresh that failed otherwise may have rotated the refresh token.
        self.request_sent = request_sent
        self.detail = message
        where = f"{provider} {endpoint}"
        what = f"{code}: {message}" if code else message
        super().__init__(f"{where}: {what}")


class AuthorizationDead(ProviderError):
    """The grant is gone (bad code, dead or revoked refresh token): re-authorize."""


class AccessExpired(ProviderError):
    """The access token is expired or invalid but the grant may live on: refresh it.

    Only a refresh that fails with `AuthorizationDead` means the merchant must authorize again.
    """


class RateLimited(ProviderError):
    """The platform asks us to slow down; `retry_after` is its wait in seconds when it said one."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        endpoint: str,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, endpoint=endpoint, code=code, status=status)
        self.retry_after = retry_after


class TemporaryFailure(ProviderError):
    """The platform failed on its side (5xx, timeout, internal error): retry later with backoff."""


class ProtocolError(TemporaryFailure):
    """The platform's answer is not what its protocol says (not JSON, a missing or mistyped field).

    It is a `TemporaryFailure` because a garbled answer is most often a gateway's error page; a
    lasting change of format shows up as repeated failures in the refresh engine's backoff.
    """


class RequestRejected(ProviderError):
    """The platform refused our request as malformed: a signature, parameter or app key is wrong."""


class BadApiCall(ShopkeysError, ValueError):
    """An app's API call cannot be sent as asked (no API name, a shop the connection lacks).

    Raised before anything reaches the platform; a `ValueError` too, as it is the caller's value
    that is wrong.
    """
