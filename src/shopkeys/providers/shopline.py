"""SHOPLINE (shoplineapp.com): a Doorkeeper OAuth 2.0 server at developers.shoplineapp.com.

Not SHOPLINE global (shopline.com, `{handle}.myshopline.com`), which signs its token calls.
The Open API lives at `https://open.shopline.io/v1/...` and refuses calls without a
`User-Agent` header. `TOKEN_EXPIRED` from token info means the access token ran out; the refresh
token may still work ("get a new one by refresh token"), so it is `AccessExpired`.

Webhooks are signed in the delivery URL's `sign` query parameter, over the
`X-Shopline-Developer-Event-Timestamp` header and the body as JavaScript's `JSON.stringify`
writes it with every object's keys sorted: the raw bytes are not what was signed, so the body is
parsed and written again exactly as JavaScript would (`js_json`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

import httpx2

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
from shopkeys.providers.inbound import (
    NO_QUERY,
    BadSignature,
    Effect,
    InboundWebhook,
    MalformedWebhook,
    identifier,
    json_object,
)
from shopkeys.providers.oauth2 import ERROR_CLASSES, OAuth2Provider
from shopkeys.version import __version__

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

#: Where a webhook's signature and the time it covers travel.
SIGN_PARAMETER: Final = "sign"
TIMESTAMP_HEADER: Final = "x-shopline-developer-event-timestamp"

#: Topics that end the authorization. `access_token/revoke` is not one: SHOPLINE sends one per
#: token ("might receive multiple webhooks, one for each token"), and a token revoked is not
#: necessarily the one a connection holds (Doorkeeper revokes each refreshed pair), so it is
#: forwarded to the app and changes nothing here.
REVOKING_TOPICS: Final = frozenset({"application/uninstall"})

#: The highest array index JavaScript knows (2**32 - 2): such keys come first, in numeric order.
_MAX_ARRAY_INDEX: Final = 2**32 - 2
_STRING_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
# What `JSON.stringify` escapes: quote, backslash, control characters and lone surrogates (a pair
# from the body arrives combined into one character, which it writes as it is).
_TO_ESCAPE: Final = re.compile(r'[\x00-\x1f"\\\ud800-\udfff]')


def webhook_signature(
    app_secret: str, timestamp: str, payload: object, *, sort_within_arrays: bool = True
) -> str:
    """The `sign` of a SHOPLINE webhook: lowercase hex HMAC-SHA256, keyed with the app secret,
    of `{timestamp}:{js_json(payload)}`; `payload` as `json.loads` reads the body."""
    message = f"{timestamp}:{js_json(payload, sort_within_arrays=sort_within_arrays)}"
    return hmac.new(app_secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def js_json(value: object, *, sort_within_arrays: bool = True) -> str:
    """`value` written as JavaScript's `JSON.stringify` writes it after sorting every object's
    keys, as SHOPLINE does before signing.

    JavaScript has one number type, a double: every number is rounded to one and written as
    `Number.prototype.toString` does (`1.0` as `1`, `1e21` as `1e+21`, an integer past 2**53 as
    the nearest double, `-0` as `0`, one too large for a double as `null`). Keys sort by UTF-16
    code unit (`Array.prototype.sort`), but keys that are array indices ("9", "10") come first in
    numeric order, as JavaScript enumerates them whatever the insertion order. Strings keep
    non-ASCII and `/` as they are. With `sort_within_arrays` False, objects inside arrays keep
    their own order (SHOPLINE's docs do not say whether their sort enters arrays).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _js_string(value)
    if isinstance(value, int | float):
        return _js_number(value)
    if isinstance(value, list):
        if not sort_within_arrays:
            return _js_unsorted(value)
        return "[" + ",".join(js_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return _js_object(value, sort=True, sort_within_arrays=sort_within_arrays)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _js_object(value: dict[str, Any], *, sort: bool, sort_within_arrays: bool) -> str:
    indices = sorted((k for k in value if _is_array_index(k)), key=int)
    names = [k for k in value if not _is_array_index(k)]
    if sort:
        names.sort(key=_utf16)
    parts = []
    for key in indices + names:
        item = value[key]
        if isinstance(item, dict):
            written = _js_object(item, sort=sort, sort_within_arrays=sort_within_arrays)
        elif isinstance(item, list) and not (sort and sort_within_arrays):
            written = "[" + ",".join(_js_unsorted(x) for x in item) + "]"
        else:
            written = js_json(item, sort_within_arrays=sort_within_arrays)
        parts.append(f"{_js_string(key)}:{written}")
    return "{" + ",".join(parts) + "}"


def _js_unsorted(value: object) -> str:
    """A value inside an array that the sort did not enter: objects keep their own key order."""
    if isinstance(value, dict):
        return _js_object(value, sort=False, sort_within_arrays=False)
    if isinstance(value, list):
        return "[" + ",".join(_js_unsorted(x) for x in value) + "]"
    return js_json(value)


def _is_array_index(key: str) -> bool:
    return (
        key.isascii()
        and key.isdigit()
        and (key == "0" or not key.startswith("0"))
        and int(key) <= _MAX_ARRAY_INDEX
    )


def _utf16(key: str) -> bytes:
    # Big-endian code units compare bytewise as JavaScript compares strings.
    return key.encode("utf-16-be", "surrogatepass")


def _js_string(text: str) -> str:
    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return _STRING_ESCAPES.get(char) or f"\\u{ord(char):04x}"

    return '"' + _TO_ESCAPE.sub(escape, text) + '"'


def _js_number(number: int | float) -> str:
    """`Number.prototype.toString` of the double nearest `number` (ECMAScript Number::toString)."""
    try:
        value = float(number)
    except OverflowError:  # an integer past the largest double: Infinity in JavaScript
        return "null"
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "0"
    # `repr` gives the shortest digits that read back as the same double, as JavaScript does.
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    written = whole + fraction
    significant = written.lstrip("0")
    digits = significant.rstrip("0")
    # The value is 0.{digits} times 10**point.
    point = len(whole) + int(exponent or 0) - (len(written) - len(significant))
    count = len(digits)
    if count <= point <= 21:
        text = digits + "0" * (point - count)
    elif 0 < point <= 21:
        text = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        rest = f".{digits[1:]}" if count > 1 else ""
        text = f"{digits[0]}{rest}e{'+' if point > 0 else '-'}{abs(point - 1)}"
    return ("-" if value < 0 else "") + text


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _signed_value(body: bytes) -> object:
    """The body as SHOPLINE's JavaScript holds it: every number a double."""
    parse: Callable[[str], float] = float
    return json.loads(body, parse_int=parse, parse_float=parse, parse_constant=_refuse_constant)


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
    # In the delivery URL's `sign` query parameter, which `read_webhook` verifies.
    signs_webhooks: ClassVar[bool] = True

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

    # -- webhooks -------------------------------------------------------------------------------

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, *, query: Mapping[str, str] = NO_QUERY
    ) -> bool:
        """Whether the URL's `sign` is this app's signature of the timestamp header and body."""
        received = query.get(SIGN_PARAMETER)
        timestamp = next((v for k, v in headers.items() if k.lower() == TIMESTAMP_HEADER), None)
        if not received or not timestamp:
            return False
        secret = self.credentials.client_secret
        try:
            value = _signed_value(body)
            # Both readings of the docs' sort (into arrays or not): each is this app's HMAC, so
            # accepting either lets in nothing the secret did not sign.
            expected = {
                webhook_signature(secret, timestamp, value),
                webhook_signature(secret, timestamp, value, sort_within_arrays=False),
            }
        except (ValueError, RecursionError):
            # Not JSON, not text, or nested too deeply: nothing SHOPLINE could have signed.
            return False
        given = received.strip().lower().encode()
        matches = [hmac.compare_digest(sign.encode(), given) for sign in sorted(expected)]
        return any(matches)

    def read_webhook(
        self, headers: Mapping[str, str], body: bytes, *, query: Mapping[str, str] = NO_QUERY
    ) -> InboundWebhook:
        """A SHOPLINE webhook: `{trace_id, ts, event, topic, merchant_id, resource}`.

        `trace_id` is what a retried delivery repeats; `merchant_id` is the connection's account
        (token info's `merchant._id`). `application/uninstall` ends the authorization. No
        window applies to the timestamp (the docs give none): a replay is stopped by its
        `trace_id` alone.
        """
        if not self.verify_webhook(headers, body, query=query):
            raise BadSignature(
                "the sign query parameter or the X-Shopline-Developer-Event-Timestamp header is "
                "missing, or the signature is not this app's"
            )
        event = json_object(body)
        topic = event.get("topic")
        if not isinstance(topic, str) or not topic:
            raise MalformedWebhook("the webhook has no topic")
        merchant = None if event.get("merchant_id") is None else identifier(event, "merchant_id")
        return InboundWebhook(
            provider=self.name,
            event_id=identifier(event, "trace_id"),
            event_type=topic,
            account_id=merchant,
            shop_id=None,
            payload=event,
            effect=Effect.REVOKED if topic in REVOKING_TOPICS else Effect.NONE,
        )

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
