"""TikTok Shop Partner API: auth v2 tokens, signed API calls (version 202309), signed webhooks.

Quirks worth knowing (docs/platforms.md, "TikTok Shop"):
- The token endpoints are unsigned GETs that carry the app secret in the query string, so no
  URL of theirs may reach an exception message or a log line (`shopkeys.redact` guards httpx2's
  logger; our own messages never name URLs).
- `access_token_expire_in` and `refresh_token_expire_in` are ABSOLUTE Unix times in seconds,
  not durations. An access expiry that is missing or 0 is taken as the documented 7 days from
  now, never as "does not expire".
- Errors arrive as HTTP 200 with a non-zero `code` (a bad signature as HTTP 401).
- Three hosts play three roles: the authorization page (`services.tiktokshop.com`, or
  `services.us.tiktokshop.com` for US sellers: region "us"), the token endpoints
  (`auth.tiktok-shops.com`) and the API (`open-api.tiktokglobalshop.com`).
- Shop-level API calls name their shop with the `shop_cipher` query parameter; authorization,
  seller and global-product calls and uploads must not carry it (`needs_shop_cipher`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

import httpx2

from shopkeys.credentials import CredentialNames
from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    BadApiCall,
    ConfigurationError,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Account, Grant, Shop
from shopkeys.platform import Platform
from shopkeys.providers.base import Fields, Provider, retry_after_seconds
from shopkeys.providers.inbound import (
    NO_QUERY,
    BadSignature,
    Effect,
    InboundWebhook,
    MalformedWebhook,
    identifier,
    json_object,
)

#: Query parameters that never enter the signature.
UNSIGNED_PARAMETERS: Final = frozenset({"sign", "access_token"})

#: Header that carries the access token on API calls.
ACCESS_TOKEN_HEADER: Final = "x-tts-access-token"

#: The query parameter that names the shop on shop-level API calls.
SHOP_CIPHER_PARAMETER: Final = "shop_cipher"

#: API paths that act on the seller or the app rather than one shop: no `shop_cipher`.
_SHOPLESS_PREFIXES: Final = ("/authorization/", "/seller/")
#: Product calls (after `/product/{version}/`) that act on global, cross-shop resources or
#: uploads, as the official SDK's API specification lists them: no `shop_cipher` either.
_SHOPLESS_PRODUCT_PREFIXES: Final = ("global_products", "global_categories", "compliance/")
_SHOPLESS_PRODUCT_CALLS: Final = ("files/upload", "images/upload")
_SHOPLESS_CATEGORY_CALLS: Final = ("global_attributes", "global_rules")

TOKEN_GET_PATH: Final = "/api/v2/token/get"
TOKEN_REFRESH_PATH: Final = "/api/v2/token/refresh"
SHOPS_PATH: Final = "/authorization/202309/shops"

# Every error code the platform documents (docs/platforms.md), and what it means for the caller.
ERROR_CLASSES: Final[Mapping[int, type[ProviderError]]] = {
    36004004: AuthorizationDead,  # auth code invalid, expired or already used
    36004001: AuthorizationDead,  # refresh token expired
    36004005: AuthorizationDead,  # no such authorization (revoked, or unknown refresh token)
    105001: AuthorizationDead,  # access token invalid: revoked with its authorization
    # An expired access token: re-authorizing would be the wrong cure, refreshing is the right one.
    105002: AccessExpired,
    105005: RequestRejected,  # the app lacks the API permission: fix the app's scopes
    106001: RequestRejected,  # bad signature
    36009004: RequestRejected,  # bad app key, timestamp or access-token header
    36009002: RateLimited,
    36009003: TemporaryFailure,  # the platform's internal error: retry
}

# Unknown codes are our request's fault unless the platform's own words say it failed on its
# side; a wrongly "temporary" error would be retried forever, a wrongly "rejected" one surfaces.
_TEMPORARY_WORDS: Final = ("internal", "system busy", "timeout", "timed out", "try again")

# Absolute Unix times before this (2001-09-09, Unix time 10**9) can only be durations mistaken
# for times.
_EARLIEST_EXPIRY: Final = datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC)


def sign(app_secret: str, path: str, params: Mapping[str, str], body: bytes = b"") -> str:
    """TikTok Shop's request signature: lowercase hex HMAC-SHA256 keyed with the app secret.

    The message is the path, then `key` + `value` of every parameter but `sign` and
    `access_token` sorted by key, then the body (pass `b""` for GET and multipart requests),
    the whole wrapped in the app secret on both sides.
    """
    pairs = "".join(f"{k}{params[k]}" for k in sorted(params) if k not in UNSIGNED_PARAMETERS)
    secret = app_secret.encode()
    message = secret + path.encode() + pairs.encode() + body + secret
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


#: Webhook types: the seller took the app's authorization back; it expires soon.
DEAUTHORIZED: Final = 6
AUTHORIZATION_EXPIRING: Final = 7


def _expiration(data: object) -> datetime:
    """The `expiration_time` of a type-7 webhook's `data` (unix seconds, sent as a string)."""
    value = data.get("expiration_time") if isinstance(data, dict) else None
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    # Ten digits reach the year 2286: more is no time TikTok sends, and may not be a date.
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise MalformedWebhook("the expiring authorization webhook has no expiration_time")
    return datetime.fromtimestamp(int(text), UTC)


def webhook_signature(app_key: str, app_secret: str, body: bytes) -> str:
    """The `Authorization` header of a TikTok Shop webhook: hex HMAC-SHA256 of app key + body."""
    return hmac.new(app_secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()


def needs_shop_cipher(path: str, method: str = "GET") -> bool:
    """Whether an API call to `path` (the platform's own path) must carry `shop_cipher`.

    From the official SDK's API specification: authorization and seller calls, global product
    and category calls, product uploads and creating a custom brand take none (the platform
    refuses the parameter on some of them); every other call acts on one shop.
    """
    if path.startswith(_SHOPLESS_PREFIXES):
        return False
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] != "product":
        return True
    resource = "/".join(parts[2:])
    if resource.startswith(_SHOPLESS_PRODUCT_PREFIXES) or resource in _SHOPLESS_PRODUCT_CALLS:
        return False
    if parts[2] == "categories" and len(parts) == 5 and parts[4] in _SHOPLESS_CATEGORY_CALLS:
        return False
    return not (resource == "brands" and method.upper() == "POST")


def signs_body(method: str, content_type: str | None) -> bool:
    """Whether the body enters the signature: not for GET, not for multipart uploads."""
    if method.upper() == "GET":
        return False
    return not (content_type or "").lower().startswith("multipart/form-data")


def shop_cipher(shops: Sequence[Mapping[str, Any]], shop_id: str | None) -> str | None:
    """The cipher of the shop `shop_id` among a connection's `shops`, or of its only shop.

    None when no shop is named and there are several (or none). `BadApiCall` when the named shop
    is not one the authorization covers.
    """
    if shop_id is None:
        only = shops[0] if len(shops) == 1 else None
        cipher = only.get("cipher") if only else None
        return cipher if isinstance(cipher, str) and cipher else None
    for shop in shops:
        if str(shop.get("id")) == shop_id:
            cipher = shop.get("cipher")
            if isinstance(cipher, str) and cipher:
                return cipher
            break
    raise BadApiCall(f"the connection's authorization covers no shop {shop_id!r} with a cipher")


class TikTokShop(Provider):
    """TikTok Shop (auth v2, API version 202309)."""

    name: ClassVar[Platform] = Platform.TIKTOK_SHOP
    credential_names: ClassVar[CredentialNames] = CredentialNames(
        "app_key", "app_secret", service_id="service_id"
    )
    display_name: ClassVar[str] = "TikTok Shop"
    account_id_hint: ClassVar[str | None] = "the seller's open_id"
    default_hosts: ClassVar[Mapping[str, str]] = {
        "authorize": "https://services.tiktokshop.com",
        "token": "https://auth.tiktok-shops.com",
        "api": "https://open-api.tiktokglobalshop.com",
    }
    # US sellers authorize on their own page; tokens and the API stay on the global hosts.
    regional_hosts: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "us": {"authorize": "https://services.us.tiktokshop.com"},
    }
    # Scopes are chosen on the app's service in Partner Center, not in the authorize request.
    # Scopes are the app's API packages, approved on TikTok Shop Partner Center, not asked for.
    unscoped_permissions: ClassVar[str] = (
        "Use your shop through the API packages this app was approved for on TikTok Shop "
        "Partner Center"
    )
    default_scopes: ClassVar[tuple[str, ...]] = ()
    refreshable: ClassVar[bool] = True
    # Access tokens live 7 days from issue; the token response normally says when, absolutely.
    default_access_lifetime: ClassVar[timedelta | None] = timedelta(days=7)
    # No source says a refresh extends the refresh token's deadline; assuming it does would let
    # a connection die without the app being warned, so shopkeys assumes it does not.
    renews_refresh_token: ClassVar[bool] = False
    signs_webhooks: ClassVar[bool] = True

    # -- authorization --------------------------------------------------------------------------

    def authorization_url(
        self, state: str, redirect_uri: str, scopes: Iterable[str] | None = None
    ) -> str:
        """The service's authorization page; TikTok ignores `redirect_uri` and `scopes`.

        TikTok always redirects to the redirect URI registered for the app, and scopes belong to
        the service. The page is addressed by the app's service id; the older page addressed by
        app key serves only legacy apps, so without a service id there is no page to send to.
        """
        problem = self.authorization_problem()
        if problem is not None:
            raise ConfigurationError(problem)
        query = urlencode({"service_id": self.credentials.service_id, "state": state})
        return self.url("authorize", f"/open/authorize?{query}")

    def authorization_problem(self) -> str | None:
        if self.credentials.service_id:
            return None
        return (
            "TikTok Shop authorization needs the app's service id (Partner Center, the app's "
            "page; set SHOPKEYS_TIKTOK_SHOP_SERVICE_ID)"
        )

    async def exchange_code(
        self, http: httpx2.AsyncClient, code: str, redirect_uri: str, **callback_params: str
    ) -> Grant:
        """Trade the callback's `code` for tokens (`redirect_uri` plays no part on TikTok)."""
        params = {
            "app_key": self.credentials.client_id,
            "app_secret": self.credentials.client_secret,
            "auth_code": code,
            "grant_type": "authorized_code",
        }
        data = await self._token_call(http, "token", TOKEN_GET_PATH, params, secret=code)
        # Where the seller's shop is, as the callback said; the token response does not say it.
        extra = {k: callback_params[k] for k in ("shop_region", "locale") if callback_params.get(k)}
        return self._grant(data, extra)

    async def refresh(self, http: httpx2.AsyncClient, refresh_token: str) -> Grant:
        """A new grant; keep its refresh token, the one sent may stop working."""
        params = {
            "app_key": self.credentials.client_id,
            "app_secret": self.credentials.client_secret,
            "refresh_token": refresh_token,
            "grant_type": "refresh_token",
        }
        data = await self._token_call(
            http, "refresh", TOKEN_REFRESH_PATH, params, secret=refresh_token
        )
        return self._grant(data, {})

    async def _token_call(
        self,
        http: httpx2.AsyncClient,
        endpoint: str,
        path: str,
        params: Mapping[str, str],
        *,
        secret: str,
    ) -> Fields:
        """GET a token endpoint; `secret` is the code or refresh token that `params` carry."""
        response = await self._send(
            http, "GET", self.url("token", path), endpoint=endpoint, params=params
        )
        return self._envelope(response, endpoint, secrets=(secret,))

    def _grant(self, data: Fields, extra: Mapping[str, str]) -> Grant:
        access_token = data.token("access_token")
        refresh_token = data.token("refresh_token")
        now = self.clock()
        access_expires = self._expiry(data, "access_token_expire_in", now)
        if access_expires is None:
            # Every token response carries a refresh token, so the access token does expire.
            access_expires = self._assumed_expiry(now, data.endpoint)
        return Grant(
            provider=self.name,
            access_token=access_token,
            refresh_token=refresh_token,
            access_expires_at=access_expires,
            refresh_expires_at=self._expiry(data, "refresh_token_expire_in", now),
            scopes=data.texts("granted_scopes"),
            account_id=data.id("open_id"),
            account_name=data.opt_text("seller_name"),
            raw={**data.without_tokens(), **extra},
        )

    def _expiry(self, data: Fields, key: str, now: datetime) -> datetime | None:
        """An absolute expiry, or None when absent or 0 (not stated).

        A value that can only be a duration is a protocol break.
        """
        if data.opt_number(key) in (None, 0):
            return None
        moment = data.moment(key, now)
        if moment < _EARLIEST_EXPIRY:
            raise self._protocol(
                data.endpoint, f"field {key!r} should be an absolute Unix time, got a duration"
            )
        return moment

    # -- identity -------------------------------------------------------------------------------

    async def identify(self, http: httpx2.AsyncClient, grant: Grant) -> Account:
        """The shops the grant covers (GET /authorization/202309/shops, signed)."""
        endpoint = "shops"
        response = await self._send(
            http,
            "GET",
            self.url("api", SHOPS_PATH),
            endpoint=endpoint,
            auth=self.auth(grant.access_token),
        )
        data = self._envelope(response, endpoint, secrets=(grant.access_token,))
        shops = [
            Shop(
                id=shop.id("id"),
                name=shop.opt_text("name"),
                region=shop.opt_text("region"),
                extra={
                    "code": shop.opt_text("code"),
                    "cipher": shop.text("cipher"),
                    "seller_type": shop.opt_text("seller_type"),
                },
            )
            for shop in data.objects("shops")
        ]
        return Account(account_id=grant.account_id, name=grant.account_name, shops=shops)

    # -- signing --------------------------------------------------------------------------------

    def for_shop(
        self, request: httpx2.Request, shops: Sequence[Mapping[str, Any]], shop_id: str | None
    ) -> httpx2.Request:
        """The call with the `shop_cipher` of the shop it acts on: the shop named by id, else
        the connection's only shop; with several and none named, the app's own parameter stays.

        `BadApiCall` for a shop the authorization does not cover.
        """
        return self.apply_shop_cipher(request, shop_cipher(shops, shop_id))

    def apply_shop_cipher(self, request: httpx2.Request, cipher: str | None) -> httpx2.Request:
        """Set `shop_cipher` on a shop-level call and remove it from one that must not carry it.

        With no `cipher`, a shop-level call keeps whatever the caller put there. Call before
        `sign_request`: the parameter is signed like any other.
        """
        if not needs_shop_cipher(self.platform_path(request.url.path), request.method):
            request.url = request.url.copy_remove_param(SHOP_CIPHER_PARAMETER)
        elif cipher:
            request.url = request.url.copy_set_param(SHOP_CIPHER_PARAMETER, cipher)
        return request

    def sign_request(self, request: httpx2.Request, access_token: str) -> httpx2.Request:
        """Add app_key, timestamp and sign to the query and the access-token header.

        The signature covers the platform's own path (without a sandbox mount prefix) and the raw
        body unless the request is a GET or a multipart upload.
        """
        timestamp = str(int(self.clock().timestamp()))
        url = request.url.copy_merge_params(
            {"app_key": self.credentials.client_id, "timestamp": timestamp}
        )
        params = {k: v for k, v in url.params.multi_items() if k != "sign"}
        body = (
            request.read()
            if signs_body(request.method, request.headers.get("content-type"))
            else b""
        )
        signature = sign(self.credentials.client_secret, self.platform_path(url.path), params, body)
        request.url = url.copy_set_param("sign", signature)
        request.headers[ACCESS_TOKEN_HEADER] = access_token
        return request

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether the `Authorization` header is this app's signature of the raw body."""
        received = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        if not received:
            return False
        expected = webhook_signature(
            self.credentials.client_id, self.credentials.client_secret, body
        )
        return hmac.compare_digest(expected.encode(), received.strip().lower().encode())

    def read_webhook(
        self, headers: Mapping[str, str], body: bytes, *, query: Mapping[str, str] = NO_QUERY
    ) -> InboundWebhook:
        """A TikTok Shop webhook: `{type, tts_notification_id, shop_id, timestamp, data}`.

        Type 6 is a seller deauthorization, type 7 an authorization expiring (`data` has
        `expiration_time`, unix seconds as a string; sent daily from 30 days before). The
        signature covers the body but no time, so only the notification id stops a replay.
        """
        if not self.verify_webhook(headers, body):
            raise BadSignature("the Authorization header is missing or not this app's signature")
        message = json_object(body)
        kind = message.get("type")
        if isinstance(kind, bool) or not isinstance(kind, int):
            raise MalformedWebhook("the webhook has no numeric type")
        data = message.get("data")
        effect, deadline = Effect.NONE, None
        if kind == DEAUTHORIZED:
            effect = Effect.REVOKED
        elif kind == AUTHORIZATION_EXPIRING:
            effect = Effect.REAUTH_DUE
            deadline = _expiration(data)
        return InboundWebhook(
            provider=self.name,
            event_id=identifier(message, "tts_notification_id"),
            event_type=str(kind),
            account_id=None,
            shop_id=identifier(message, "shop_id"),
            payload=message,
            effect=effect,
            deadline=deadline,
        )

    # -- answers --------------------------------------------------------------------------------

    def classify(
        self, response: httpx2.Response, endpoint: str = "api", *, secrets: Iterable[str] = ()
    ) -> ProviderError | None:
        """The classified error for an answer in TikTok's envelope, or None when it succeeded.

        Every answer is `{"code", "message", "request_id", "data"}`; success is `code` 0 with a
        2xx status. Errors mostly come as HTTP 200 with a non-zero `code` (a bad signature as
        HTTP 401). 429 and 5xx are what their status says, whatever the body; a 4xx without a
        JSON body refused our request; an answer without an integer `code` is not the envelope
        (`ProtocolError`). `secrets` (what the request carried) never appear in the error, nor
        does the app secret.
        """
        error = self._status_error(response, endpoint)
        if error is not None:
            return error
        status = response.status_code
        if response.is_client_error and not _looks_json(response):
            return self._error(
                RequestRejected, endpoint, f"HTTP {status} without an error body", status=status
            )
        try:
            body = self._json_object(response, endpoint)
        except ProtocolError as garbled:
            return garbled
        code = body.get("code")
        if isinstance(code, bool) or not isinstance(code, int):
            return self._protocol(endpoint, "field 'code' should be an integer")
        if code != 0:
            return self._classify(code, body.get("message"), response, endpoint, tuple(secrets))
        if not response.is_success:
            return self._error(
                RequestRejected, endpoint, f"HTTP {status} with code 0", status=status
            )
        return None

    def _envelope(
        self, response: httpx2.Response, endpoint: str, *, secrets: tuple[str, ...]
    ) -> Fields:
        """The `data` object of a successful answer, or the classified error.

        `secrets` are what the request carried (its code or token): an error never repeats them.
        """
        error = self.classify(response, endpoint, secrets=secrets)
        if error is not None:
            raise error
        return self._json_object(response, endpoint).object("data")

    def _classify(
        self,
        code: int,
        message: object,
        response: httpx2.Response,
        endpoint: str,
        secrets: tuple[str, ...] = (),
    ) -> ProviderError:
        # The platform's words; `_error` cleans them in case they echo the request back.
        text = message if isinstance(message, str) and message else "no message"
        status = response.status_code
        kind = ERROR_CLASSES.get(code)
        if kind is RateLimited:
            return self._rate_limited(
                endpoint,
                text,
                code=str(code),
                status=status,
                retry_after=retry_after_seconds(response),
                secrets=secrets,
            )
        if kind is None:
            temporary = any(word in text.lower() for word in _TEMPORARY_WORDS)
            kind = TemporaryFailure if temporary else RequestRejected
        return self._error(kind, endpoint, text, code=str(code), status=status, secrets=secrets)


def _looks_json(response: httpx2.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return "json" in content_type or response.content.lstrip()[:1] == b"{"


#: The class `shopkeys.providers.get` finds for this platform.
PROVIDER = TikTokShop
