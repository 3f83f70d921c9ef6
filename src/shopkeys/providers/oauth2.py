"""The RFC 6749 parts that SHOPLINE and Ecwid share: authorize URLs, token calls, error bodies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx2

from shopkeys.errors import AuthorizationDead, ProviderError, RequestRejected, TemporaryFailure
from shopkeys.providers.base import Fields, Provider

# RFC 6749 section 5.2 error codes, and what each means for the caller.
ERROR_CLASSES: Mapping[str, type[AuthorizationDead | RequestRejected | TemporaryFailure]] = {
    "invalid_grant": AuthorizationDead,
    "access_denied": AuthorizationDead,
    "invalid_request": RequestRejected,
    "invalid_client": RequestRejected,
    "unauthorized_client": RequestRejected,
    "unsupported_grant_type": RequestRejected,
    "unsupported_response_type": RequestRejected,
    "invalid_scope": RequestRejected,
    "invalid_redirect_uri": RequestRejected,
    "server_error": TemporaryFailure,
    "temporarily_unavailable": TemporaryFailure,
}


class OAuth2Provider(Provider):
    """A platform that speaks plain OAuth 2.0 authorization-code grants."""

    #: How the platform's authorization page joins scopes.
    scope_separator = " "

    def _authorize(self, url: str, params: Mapping[str, str | None]) -> str:
        query = {k: v for k, v in params.items() if v is not None}
        return f"{url}?{urlencode(query)}"

    def _code_request_url(
        self, path: str, state: str, redirect_uri: str, scopes: Iterable[str] | None
    ) -> str:
        """An RFC 6749 authorization request (section 4.1.1) for `path` on the auth host."""
        return self._authorize(
            self.url("auth", path),
            {
                "client_id": self.credentials.client_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": self._scope_param(scopes),
                "state": state,
            },
        )

    def _scope_param(self, scopes: Iterable[str] | None) -> str | None:
        chosen = tuple(scopes) if scopes is not None else self.scopes
        return self.scope_separator.join(chosen) if chosen else None

    async def _token_request(
        self,
        http: httpx2.AsyncClient,
        endpoint: str,
        url: str,
        *,
        secrets: tuple[str, ...],
        **kwargs: Any,
    ) -> Fields:
        """POST to a token endpoint and return the success body, or raise the classified error.

        `secrets` are the code or token the request carries: an error never repeats them.
        """
        response = await self._send(http, "POST", url, endpoint=endpoint, **kwargs)
        self._check_http_status(response, endpoint)
        body = self._json_object(response, endpoint)
        if response.is_success and "error" not in body:
            return body
        raise self._oauth_error(body, response.status_code, endpoint, secrets=secrets)

    def _oauth_error(
        self, body: Fields, status: int, endpoint: str, *, secrets: tuple[str, ...] = ()
    ) -> ProviderError:
        """The error class for an RFC 6749 error body (or a bare 4xx without one).

        The platform's words are cleaned of `secrets` (what the request carried) and the client
        secret, in case they echo the request back.
        """
        code = body.get("error")
        if not isinstance(code, str):
            # No RFC 6749 body: a 401/403 means our credentials, anything else our request.
            message = _describe(body) or f"HTTP {status} without an error code"
            return self._error(RequestRejected, endpoint, message, status=status, secrets=secrets)
        kind = ERROR_CLASSES.get(code, RequestRejected)
        description = body.get("error_description")
        message = description if isinstance(description, str) and description else code
        return self._error(kind, endpoint, message, code=code, status=status, secrets=secrets)


def _describe(body: Fields) -> str | None:
    for key in ("errorMessage", "message", "error_description"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None
