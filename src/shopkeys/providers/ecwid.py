"""Ecwid (Lightspeed E-Series): OAuth 2.0 codes for tokens that never expire, Bearer-only REST.

Quirks worth knowing (docs/platforms.md, "Ecwid", checked against docs.ecwid.com):
- Access tokens (`secret_...`) do not expire and there is no refresh grant: the grant has no
  expiry and `refresh()` raises `NotSupported`. A token dies when the app is uninstalled, or
  when its authorization code is exchanged a second time; the REST API then answers
  403 `INVALID_API_TOKEN`, which means "re-authorize".
- The code exchange is a form-encoded POST (GET stopped working on 2025-03-20) to
  `/api/oauth/token/{store_id}`, the store id taken from the callback (required since
  2025-09-19; the path without it was announced to stop working about six months later).
- Installs from the Ecwid App Market reach the redirect URI with `code` and `store_id` but no
  `state`: shopkeys started no flow, so the connection is made without an end user.
- Apps with the `public_storefront` scope also get a `public_token`, which never expires and
  cannot be fetched again without a new authorization: it is kept in `Grant.public_token`.
- The REST API takes the token only as `Authorization: Bearer` (the `?token=` query parameter
  stopped working on 2025-03-20).
- REST errors are `{"errorMessage": ..., "errorCode": ...}`; the token endpoint's errors are not
  documented, so both that shape and RFC 6749's `{"error": ...}` are understood.
- Webhooks are signed over `{eventCreated}.{eventId}` from the JSON body, not over the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import ClassVar, Final

import httpx2

from shopkeys.errors import (
    AuthorizationDead,
    BadCallback,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Account, Grant, Shop
from shopkeys.platform import Platform
from shopkeys.providers.base import Fields, parse_json, retry_after_seconds, split_scopes
from shopkeys.providers.inbound import (
    NO_QUERY,
    BadSignature,
    Effect,
    InboundWebhook,
    MalformedWebhook,
    identifier,
    json_object,
)
from shopkeys.providers.oauth2 import ERROR_CLASSES as OAUTH_ERROR_CLASSES
from shopkeys.providers.oauth2 import OAuth2Provider

AUTHORIZE_PATH: Final = "/api/oauth/authorize"
TOKEN_PATH: Final = "/api/oauth/token"
SIGNATURE_HEADER: Final = "X-Ecwid-Webhook-Signature"

# Ecwid's REST error codes (docs.ecwid.com, "REST API error codes") whose class is not simply
# "our request was refused". Every code not listed here is `RequestRejected`, see `error_class`.
REST_ERROR_CLASSES: Final[Mapping[str, type[ProviderError]]] = {
    # The token is unknown, revoked by an uninstall, or disabled by a second exchange of its
    # code: only a new authorization brings access back.
    "INVALID_API_TOKEN": AuthorizationDead,
    # The store itself is gone (deleted): the grant can never work again. Our own store id comes
    # from the token response, so it is not a typo on our side.
    "STORE_NOT_FOUND": AuthorizationDead,
    # The token works but lacks a scope: the app must ask for it (our configuration), and
    # re-authorizing with the same scopes would not help.
    "INSUFFICIENT_APP_SCOPE": RequestRejected,
    # 402s: the store's plan lacks the API or the feature, or the store is suspended. The token
    # stays valid and re-authorizing would not help, so the connection is not dead; the call is
    # refused until the merchant upgrades or reopens the store, and retrying will not change it.
    "NOT_AVAILABLE_ON_CURRENT_PLAN": RequestRejected,
    "STORE_IS_SUSPENDED": RequestRejected,
    "RATE_LIMITED": RateLimited,
    "TIMEOUT": TemporaryFailure,
    "INTERNAL_ERROR": TemporaryFailure,
}

# Store ids are positive integers (1003 in the docs, 8-9 digits today); they go into URL paths.
_STORE_ID: Final = re.compile(r"[1-9][0-9]{0,11}")

# HTTP statuses that mean "try again later" even with an unknown error code.
_TEMPORARY_STATUSES: Final = frozenset({408, 502, 503, 504})


#: The event types that end the app's authorization for the store.
UNINSTALLED: Final = frozenset({"application.uninstalled"})


def signature(client_secret: str, event_created: int | str, event_id: str) -> str:
    """Ecwid's webhook signature: base64 HMAC-SHA256 of `{eventCreated}.{eventId}`.

    The key is the app's client secret (not a `secret_...` access token).
    """
    message = f"{event_created}.{event_id}".encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def error_class(code: str | None, status: int) -> type[ProviderError]:
    """The class for an Ecwid REST error code (or a bare status when there is no code).

    Unknown codes are `RequestRejected` unless the status says the platform failed on its side:
    a wrongly "temporary" error would be retried forever, a wrongly "rejected" one surfaces.
    """
    known = REST_ERROR_CLASSES.get(code) if code else None
    if known is not None:
        return known
    if status == 429:
        return RateLimited
    if status >= 500 or status in _TEMPORARY_STATUSES:
        return TemporaryFailure
    if code is None and status in (401, 403):
        # Ecwid has been seen answering a bare 403 (no body) for an unknown token. We always
        # send the header, so a refused credential is the token's death, not our request's bug.
        return AuthorizationDead
    return RequestRejected


class Ecwid(OAuth2Provider):
    """Ecwid's OAuth flow, store profile lookup, REST error classification and webhooks."""

    name: ClassVar[Platform] = Platform.ECWID
    display_name: ClassVar[str] = "Ecwid"
    account_id_hint: ClassVar[str | None] = "the store id"
    default_hosts: ClassVar[Mapping[str, str]] = {
        "auth": "https://my.ecwid.com",
        "api": "https://app.ecwid.com",
    }
    scope_words: ClassVar[Mapping[str, str]] = {
        "read_store_profile": "See your store's name and settings",
        "update_store_profile": "Change your store's settings",
        "read_catalog": "See your products and categories",
        "update_catalog": "Change your products and categories",
        "create_catalog": "Add products and categories",
        "read_orders": "See your orders",
        "update_orders": "Change your orders",
        "create_orders": "Create orders",
        "read_customers": "See your customers",
        "update_customers": "Change your customers",
        "public_storefront": "Show your public catalog on other sites",
    }
    # `read_store_profile` is always granted; identify needs nothing more.
    default_scopes: ClassVar[tuple[str, ...]] = (
        "read_store_profile",
        "read_catalog",
        "read_orders",
    )
    refreshable: ClassVar[bool] = False
    # Ecwid access tokens never expire: a missing expiry means exactly that here.
    default_access_lifetime: ClassVar[timedelta | None] = None
    # There is no refresh token, so no deadline to push back.
    renews_refresh_token: ClassVar[bool] = False
    signs_webhooks: ClassVar[bool] = True
    installs_without_state: ClassVar[bool] = True
    # "600 requests per minute per token" (Ecwid REST API docs, "Rate limits"); more get 429.
    api_calls_per_minute: ClassVar[int | None] = 600

    # -- authorization ----------------------------------------------------------------------------

    def authorization_url(
        self, state: str, redirect_uri: str, scopes: Iterable[str] | None = None
    ) -> str:
        return self._code_request_url(AUTHORIZE_PATH, state, redirect_uri, scopes)

    async def exchange_code(
        self, http: httpx2.AsyncClient, code: str, redirect_uri: str, **callback_params: str
    ) -> Grant:
        endpoint = "token"
        declined = callback_params.get("error")
        if declined:
            kind = OAUTH_ERROR_CLASSES.get(declined, RequestRejected)
            raise self._error(kind, endpoint, "the merchant did not authorize", code=declined)
        store_id = callback_params.get("store_id", "")
        if not store_id:
            raise BadCallback("the callback has no store_id: Ecwid exchanges codes per store")
        if self.account_id_problem(store_id) is not None:
            # The store id goes into the token URL's path: only a real one is ever sent there.
            raise BadCallback("the callback's store_id is not an Ecwid store id")
        response = await self._send(
            http,
            "POST",
            self.token_url(store_id),
            endpoint=endpoint,
            data={
                "client_id": self.credentials.client_id,
                "client_secret": self.credentials.client_secret,
                "code": code,
                "redirect_uri": redirect_uri,
                "grant_type": "authorization_code",
            },
        )
        self._check_http_status(response, endpoint)
        if not response.is_success and not _is_json_object(response):
            # A 4xx without an error body (a proxy's page, an empty answer) is still a refusal
            # of our request; only a garbled success is a protocol error.
            raise self._error(
                RequestRejected,
                endpoint,
                f"HTTP {response.status_code} without an error body",
                status=response.status_code,
            )
        body = self._json_object(response, endpoint)
        if not response.is_success or "error" in body or "errorCode" in body:
            raise self._token_error(body, response.status_code, endpoint, secrets=(code,))
        grant = self._grant(body)
        if store_id != grant.account_id:
            raise self._protocol(endpoint, "the token belongs to another store than the callback")
        return grant

    def account_id_problem(self, account_id: str) -> str | None:
        if _STORE_ID.fullmatch(account_id) is None:
            return "an Ecwid store id is a number (up to 12 digits, no leading zero)"
        return None

    def token_url(self, store_id: str) -> str:
        """Where store `store_id`'s authorization codes are exchanged."""
        return self.url("auth", f"{TOKEN_PATH}/{store_id}")

    def _grant(self, body: Fields) -> Grant:
        access_token = body.token("access_token")
        token_type = body.opt_text("token_type")
        # The docs show "bearer", Ecwid's own WordPress plugin expects "Bearer": accept both.
        if token_type is not None and token_type.lower() != "bearer":
            # `_protocol` cleans the platform's word, in case it is not a type but a credential.
            raise self._protocol(body.endpoint, f"unexpected token type {token_type[:20]!r}")
        return Grant(
            provider=self.name,
            access_token=access_token,
            refresh_token=None,
            access_expires_at=None,
            refresh_expires_at=None,
            scopes=split_scopes(body.opt_text("scope")),
            account_id=body.id("store_id"),
            account_name=None,
            raw=body.without_tokens(),
            public_token=body.opt_token("public_token"),
        )

    def _token_error(
        self, body: Fields, status: int, endpoint: str, *, secrets: tuple[str, ...]
    ) -> ProviderError:
        # A bare 401/403 here refuses our client credentials (RequestRejected, as RFC 6749 has
        # it), unlike on the REST API where it refuses the token.
        if isinstance(body.get("errorCode"), str):
            return self._rest_error(body, status, endpoint, secrets=secrets)
        return self._oauth_error(body, status, endpoint, secrets=secrets)

    # -- the REST API -----------------------------------------------------------------------------

    def api_url(self, store_id: str, path: str) -> str:
        """The REST URL of `path` (starting with `/`) in store `store_id`."""
        return self.url("api", f"/api/v3/{store_id}{path}")

    def api_call_url(self, path: str, account_id: str) -> str:
        """Calls name the store in the path: an app's `/products` is the store's `/products`."""
        return self.api_url(account_id, path)

    async def identify(self, http: httpx2.AsyncClient, grant: Grant) -> Account:
        endpoint = "profile"
        invalid = self.account_id_problem(grant.account_id)
        if invalid is not None:
            raise self._error(RequestRejected, endpoint, invalid)
        response = await self._send(
            http,
            "GET",
            self.api_url(grant.account_id, "/profile"),
            endpoint=endpoint,
            headers={"Authorization": f"Bearer {grant.access_token}", "Accept": "application/json"},
        )
        problem = self.classify(response, endpoint, secrets=(grant.access_token,))
        if problem is not None:
            raise problem
        profile = self._json_object(response, endpoint)
        general = profile.object("generalInfo")
        store_id = general.id("storeId")
        if store_id != grant.account_id:
            raise self._protocol(endpoint, "the profile belongs to another store than the grant")
        settings = _optional_object(profile, "settings")
        account = _optional_object(profile, "account")
        store_name = settings.opt_text("storeName") if settings else None
        owner_name = account.opt_text("accountName") if account else None
        store_url = general.opt_text("storeUrl")
        name = store_name or owner_name or store_url
        extra = {k: v for k, v in {"store_url": store_url, "owner": owner_name}.items() if v}
        return Account(
            account_id=store_id,
            name=name,
            shops=[Shop(id=store_id, name=name, extra=extra)],
            extra=extra,
        )

    def classify(
        self, response: httpx2.Response, endpoint: str = "api", *, secrets: Iterable[str] = ()
    ) -> ProviderError | None:
        """The classified error for a REST API answer, or None when it succeeded.

        `secrets` are values the request carried (its access token): the error never repeats
        them, nor the app's client secret, should Ecwid echo the request back.
        """
        if response.is_success:
            return None
        status = response.status_code
        try:
            data = parse_json(response)
        except ValueError:
            data = None
        if isinstance(data, dict):
            body = Fields(data, provider=self.name, endpoint=endpoint)
            return self._rest_error(
                body, status, endpoint, retry_after_seconds(response), secrets=tuple(secrets)
            )
        # No JSON body (an empty 403, a gateway's HTML page): the status alone decides.
        kind = error_class(None, status)
        message = f"the platform answered HTTP {status} without an error code"
        if kind is RateLimited:
            return self._rate_limited(
                endpoint, message, status=status, retry_after=retry_after_seconds(response)
            )
        return self._error(kind, endpoint, message, status=status)

    def _rest_error(
        self,
        body: Fields,
        status: int,
        endpoint: str,
        retry_after: float | None = None,
        *,
        secrets: tuple[str, ...] = (),
    ) -> ProviderError:
        raw_code = body.get("errorCode")
        code = raw_code if isinstance(raw_code, str) and raw_code else None
        raw_message = body.get("errorMessage")
        message = raw_message if isinstance(raw_message, str) and raw_message else f"HTTP {status}"
        kind = error_class(code, status)
        if kind is RateLimited:
            return self._rate_limited(
                endpoint,
                message,
                code=code,
                status=status,
                retry_after=retry_after,
                secrets=secrets,
            )
        return self._error(kind, endpoint, message, code=code, status=status, secrets=secrets)

    # -- webhooks ---------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        received = next(
            (v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None
        )
        if not received:
            return False
        try:
            event = json.loads(body)
        except (ValueError, RecursionError):
            # Not JSON, not text, an integer too long to convert, or nested too deeply.
            return False
        if not isinstance(event, dict):
            return False
        created = event.get("eventCreated")
        event_id = event.get("eventId")
        # Ecwid sends eventCreated as an integer; a float or bool would format differently than
        # on Ecwid's side, so only integers (or their decimal strings) can match.
        if isinstance(created, bool) or not isinstance(created, int | str):
            return False
        if not isinstance(event_id, str):
            return False
        expected = signature(self.credentials.client_secret, created, event_id)
        return hmac.compare_digest(expected.encode(), received.encode())

    def read_webhook(
        self, headers: Mapping[str, str], body: bytes, *, query: Mapping[str, str] = NO_QUERY
    ) -> InboundWebhook:
        """An Ecwid webhook. The signature covers only `eventCreated.eventId`, not the body:
        `data` is as trustworthy as the transport, and worth looking up through the API before
        acting on it. `eventId` is what a retried delivery repeats."""
        if not self.verify_webhook(headers, body):
            raise BadSignature("the X-Ecwid-Webhook-Signature header is missing or wrong")
        event = json_object(body)
        event_type = event.get("eventType")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedWebhook("the webhook has no eventType")
        return InboundWebhook(
            provider=self.name,
            event_id=identifier(event, "eventId"),
            event_type=event_type,
            account_id=identifier(event, "storeId"),
            shop_id=None,
            payload=event,
            effect=Effect.REVOKED if event_type in UNINSTALLED else Effect.NONE,
        )


def _is_json_object(response: httpx2.Response) -> bool:
    try:
        return isinstance(parse_json(response), dict)
    except ValueError:
        return False


def _optional_object(fields: Fields, key: str) -> Fields | None:
    """A nested object that a narrowed profile (`responseFields`) may leave out."""
    return fields.object(key) if fields.get(key) is not None else None


#: The class `shopkeys.providers.get` finds for this platform.
PROVIDER = Ecwid
