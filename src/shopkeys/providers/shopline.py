"""SHOPLINE (shoplineapp.com): a Doorkeeper OAuth 2.0 server at developers.shoplineapp.com.

Not SHOPLINE global (shopline.com, `{handle}.myshopline.com`), which signs its token calls.
The Open API lives at `https://open.shopline.io/v1/...` and refuses calls without a
`User-Agent` header. `TOKEN_EXPIRED` from token info means the access token ran out; the refresh
token may still work ("get a new one by refresh token"), so it is `AccessExpired`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import ClassVar
from urllib.parse import urlsplit

import httpx2

from shopkeys import __version__
from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    ConfigurationError,
    ProtocolError,
    ProviderError,
    RequestRejected,
)
from shopkeys.grant import Account, Grant, Shop
from shopkeys.platform import Platform
from shopkeys.providers.base import Fields, media_type, parse_json, split_scopes
from shopkeys.providers.oauth2 import ERROR_CLASSES, OAuth2Provider

#: The platform's docs: "The refresh token will expire within one day after the access token has
#: expired." The token response does not say when, so this is how we know.
REFRESH_GRACE = timedelta(days=1)

#: Endpoints that present an access token, where `TOKEN_EXPIRED` is about that token.
ACCESS_TOKEN_ENDPOINTS = frozenset({"token_info", "api"})

#: The Open API's version prefix: `https://open.shopline.io/v1/...`.
API_VERSION_PREFIX = "/v1"

#: The Open API refuses calls without a User-Agent; this one is sent unless the app set its own.
USER_AGENT = f"shopkeys/{__version__}"

# Codes SHOPLINE sends beyond RFC 6749 (token info) plus Doorkeeper's own `invalid_token`.
SHOPLINE_ERROR_CLASSES: Mapping[str, type[ProviderError]] = {
    **ERROR_CLASSES,
    # The access token ran out; the platform's docs say to get a new one by refresh token, so
    # only a failed refresh means the grant is gone.
    "TOKEN_EXPIRED": AccessExpired,
    # Uninstalled or revoked: the refresh token died with it, only a new authorization helps.
    "TOKEN_REVOKED": AuthorizationDead,
    # We sent no Bearer header: our bug.
    "MISSING_TOKEN_ERROR": RequestRejected,
    # Doorkeeper's stock answer for an unknown token.
    "invalid_token": AuthorizationDead,
}


class Shopline(OAuth2Provider):
    """SHOPLINE Open API apps: authorization code grant, rotating refresh tokens, token info."""

    name: ClassVar[Platform] = Platform.SHOPLINE
    display_name: ClassVar[str] = "SHOPLINE"
    default_hosts: ClassVar[Mapping[str, str]] = {
        "auth": "https://developers.shoplineapp.com",
        "api": "https://open.shopline.io",
    }
    scope_words: ClassVar[Mapping[str, str]] = {
        "merchants": "See your store's profile",
        "products": "See and manage your products",
        "orders": "See and manage your orders",
        "customers": "See and manage your customers",
        "webhooks": "Receive notifications about changes in your store",
    }
    # SHOPLINE scopes are resource names, not read/write pairs: store profile, products, orders.
    default_scopes: ClassVar[tuple[str, ...]] = ("merchants", "products", "orders")
    refreshable: ClassVar[bool] = True
    # Doorkeeper's configured `expires_in` for app tokens (≈182.6 days), as the token exchange
    # guide's example shows it.
    default_access_lifetime: ClassVar[timedelta | None] = timedelta(seconds=15778476)
    # The refresh token dies `REFRESH_GRACE` after its access token, and each refresh issues a new
    # pair: refreshing pushes the refresh token's deadline back.
    renews_refresh_token: ClassVar[bool] = True
    # SHOPLINE does sign webhooks, but in the delivery URL's `sign` query parameter over re-sorted
    # JSON, which `verify_webhook(headers, body)` cannot see.
    signs_webhooks: ClassVar[bool] = False

    def authorization_url(
        self, state: str, redirect_uri: str, scopes: Iterable[str] | None = None
    ) -> str:
        if urlsplit(redirect_uri).query:
            # SHOPLINE refuses to register such an address, so the flow could never complete.
            raise ConfigurationError("SHOPLINE redirect URIs may not carry query parameters")
        return self._code_request_url("/oauth/authorize", state, redirect_uri, scopes)

    async def exchange_code(
        self, http: httpx2.AsyncClient, code: str, redirect_uri: str, **callback_params: str
    ) -> Grant:
        endpoint = "token"
        error = callback_params.get("error")
        if error:
            # The merchant pressed Deny (or the page refused us): nothing to exchange.
            body = Fields(dict(callback_params), provider=self.name, endpoint="authorize")
            raise self._oauth_error(body, 400, "authorize", secrets=(code,))
        body = await self._token_request(
            http,
            endpoint,
            self.url("auth", "/oauth/token"),
            json={
                "code": code,
                "grant_type": "authorization_code",
                "client_id": self.credentials.client_id,
                "client_secret": self.credentials.client_secret,
                "redirect_uri": redirect_uri,
            },
            secrets=(code,),
        )
        return self._grant(body)

    async def refresh(self, http: httpx2.AsyncClient, refresh_token: str) -> Grant:
        # The docs show query parameters; a JSON body (accepted as well) keeps secrets out of URLs
        # and so out of every proxy's access log. They list `redirect_uri` too, so it is sent.
        fields = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
        }
        if self.redirect_uri:
            fields["redirect_uri"] = self.redirect_uri
        body = await self._token_request(
            http, "refresh", self.url("auth", "/oauth/token"), json=fields, secrets=(refresh_token,)
        )
        return self._grant(body)

    def api_url(self, path: str) -> str:
        """The Open API URL of `path` (starting with `/`, without the `/v1` version prefix)."""
        return self.url("api", API_VERSION_PREFIX + path)

    def sign_request(self, request: httpx2.Request, access_token: str) -> httpx2.Request:
        """Bearer token, and a User-Agent: the Open API refuses requests without one."""
        request.headers["Authorization"] = f"Bearer {access_token}"
        agent = request.headers.get("user-agent", "")
        if not agent or agent.startswith("python-httpx"):
            request.headers["User-Agent"] = USER_AGENT
        return request

    def classify(
        self, response: httpx2.Response, endpoint: str = "api", *, secrets: Iterable[str] = ()
    ) -> ProviderError | None:
        """The classified error for an Open API answer, or None when it succeeded.

        The status decides first: 2xx is success (a success body may well hold fields called
        `code` or `error`), 429 and 5xx are what their status says whatever the body. A refusal
        that names its code (`{"code", "message"}` as token info and the Open API answer, or
        Doorkeeper's `{"error", "error_description"}`) is classified by that code:
        `TOKEN_EXPIRED` refresh first, `TOKEN_REVOKED` and `invalid_token` re-authorize. A
        refusal without one is what its status says: 401 the access token (refresh first), 408
        retry, anything else our request. A 2xx whose body is not JSON is no Open API answer
        (`ProtocolError`). `secrets` (what the request carried) never appear in the error, nor
        does the client secret.
        """
        error = self._status_error(response, endpoint)
        if error is not None:
            return error
        sent = tuple(secrets)
        try:
            data = parse_json(response)
        except ValueError:
            if response.is_success and response.content.strip():
                return self._protocol(
                    endpoint,
                    f"expected a JSON body, got HTTP {response.status_code} with "
                    f"{media_type(response)}",
                )
            data = None
        if response.is_success:
            return None
        if isinstance(data, dict):
            body = Fields(data, provider=self.name, endpoint=endpoint)
            if _error_code(body) is not None:
                return self._oauth_error(
                    body, response.status_code, endpoint, secrets=sent, presented_access_token=True
                )
            return self._refusal(response, endpoint, _description(body), secrets=sent)
        return self._refusal(response, endpoint)

    async def identify(self, http: httpx2.AsyncClient, grant: Grant) -> Account:
        endpoint = "token_info"
        response = await self._send(
            http,
            "GET",
            self.url("auth", "/oauth/token/info"),
            endpoint=endpoint,
            headers={"Authorization": f"Bearer {grant.access_token}", "Accept": "application/json"},
        )
        self._check_http_status(response, endpoint)
        body = self._json_object(response, endpoint)
        if not response.is_success or "error" in body or "code" in body:
            raise self._oauth_error(
                body, response.status_code, endpoint, secrets=(grant.access_token,)
            )
        merchant = body.object("merchant")
        merchant_id = merchant.id("_id")
        name = merchant.opt_text("name")
        handle = merchant.opt_text("handle")
        email = merchant.opt_text("email")
        shop_extra = {k: v for k, v in (("handle", handle), ("email", email)) if v}
        return Account(
            account_id=merchant_id,
            name=name,
            shops=[Shop(id=merchant_id, name=name, extra=shop_extra)],
            extra={"scopes": _scopes(body), "handle": handle},
        )

    async def revoke(self, http: httpx2.AsyncClient, token: str) -> None:
        """Revoke an access or refresh token (either one ends the whole authorization)."""
        endpoint = "revoke"
        response = await self._send(
            http,
            "POST",
            self.url("auth", "/oauth/revoke"),
            endpoint=endpoint,
            auth=httpx2.BasicAuth(self.credentials.client_id, self.credentials.client_secret),
            json={"token": token},
        )
        self._check_http_status(response, endpoint)
        # Even the success is `{}`: anything else (a gateway's page) leaves the outcome unknown.
        body = self._json_object(response, endpoint)
        if response.is_success and "error" not in body:
            return
        raise self._oauth_error(body, response.status_code, endpoint, secrets=(token,))

    # -- parsing --------------------------------------------------------------------------------

    def _oauth_error(
        self,
        body: Fields,
        status: int,
        endpoint: str,
        *,
        secrets: tuple[str, ...] = (),
        presented_access_token: bool | None = None,
    ) -> ProviderError:
        """As `OAuth2Provider._oauth_error`, with SHOPLINE's own codes.

        `presented_access_token` says whether the call carried an access token (an API call);
        by default, whether `endpoint` is one of `ACCESS_TOKEN_ENDPOINTS`.
        """
        code = _error_code(body)
        if code is None:
            return super()._oauth_error(body, status, endpoint, secrets=secrets)
        if presented_access_token is None:
            presented_access_token = endpoint in ACCESS_TOKEN_ENDPOINTS
        # Unknown codes are our request's fault unless proven otherwise: a temporary failure
        # would come as 5xx, which `_check_http_status` already handled.
        kind = SHOPLINE_ERROR_CLASSES.get(code, RequestRejected)
        if kind is AccessExpired and not presented_access_token:
            # Only a call that presented an access token can be told that token expired; from
            # the token endpoint the same words can only be about the grant itself.
            kind = AuthorizationDead
        message = _description(body) or code
        return self._error(kind, endpoint, message, code=code, status=status, secrets=secrets)

    def _grant(self, body: Fields) -> Grant:
        token_type = body.text("token_type")
        if token_type.lower() != "bearer":
            # `_protocol` cleans the platform's word, in case it is not a type but a credential.
            raise self._protocol(
                body.endpoint, f"token_type should be Bearer, got {token_type[:20]!r}"
            )
        access_token = body.token("access_token")
        refresh_token = body.opt_token("refresh_token")
        access_expires = self._access_expiry(body, refreshable=refresh_token is not None)
        refresh_expires = (
            access_expires + REFRESH_GRACE if refresh_token and access_expires else None
        )
        merchant = body.object("merchant") if body.get("merchant") is not None else None
        if "resource_owner_id" in body or merchant is None:
            account_id = body.id("resource_owner_id")
        else:
            account_id = merchant.id("_id")
        return Grant(
            provider=self.name,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires_at=access_expires,
            refresh_expires_at=refresh_expires,
            scopes=_scopes(body),
            account_id=account_id,
            account_name=merchant.opt_text("name") if merchant else None,
            raw=body.without_tokens(),
        )

    def _access_expiry(self, body: Fields, *, refreshable: bool) -> datetime | None:
        """`created_at + expires_in`: the token's life counts from its issue, not from now.

        Without `expires_in`, a grant that has a refresh token (an OAuth app's) lives the
        documented `default_access_lifetime`: only a token with nothing to refresh, such as a
        staff-generated one imported by hand, can be one that never expires.
        """
        expires_in = body.opt_lifetime("expires_in")
        if expires_in is None and not refreshable:
            return None  # Doorkeeper leaves it out for tokens that never expire.
        now = self.clock()
        issued = body.opt_moment("created_at", now) or now
        if expires_in is None:
            return self._assumed_expiry(issued, body.endpoint)
        return issued + expires_in


def _error_code(body: Fields) -> str | None:
    """The code of an error body: Doorkeeper's `error`, else SHOPLINE's own `code`."""
    for key in ("error", "code"):
        value = body.get(key)
        if isinstance(value, str):
            return value
    return None


def _description(body: Fields) -> str | None:
    """The words of an error body, where they are a string.

    Doorkeeper sometimes sends a dict of descriptions; only a string is a message.
    """
    for key in ("error_description", "message"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _scopes(body: Fields) -> list[str]:
    """The token response sends a space-separated string, token info a list."""
    value = body.get("scope")
    if isinstance(value, list):
        return body.texts("scope")
    if value is not None and not isinstance(value, str):
        raise ProtocolError(
            f"field 'scope' should be a string or a list, got {type(value).__name__}",
            provider=body.provider,
            endpoint=body.endpoint,
        )
    return split_scopes(value)


#: The class `shopkeys.providers.get` finds for this platform.
PROVIDER = Shopline
