"""AliExpress Open Platform (the IOP gateway that Lazada shares): signed system and business calls.

Token calls are the system APIs `/auth/token/create` and `/auth/token/refresh`, sent the way the
official IOP SDKs send them: a form POST to `/rest` carrying `method={api name}`, the system
parameters and an HMAC-SHA256 signature. Business APIs go to `/sync` with the access token as
`session`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import ClassVar
from urllib.parse import parse_qsl, urlencode

import httpx2

from shopkeys.credentials import CredentialNames
from shopkeys.errors import (
    AccessExpired,
    AuthorizationDead,
    BadApiCall,
    ProtocolError,
    ProviderError,
    RateLimited,
    RequestRejected,
    TemporaryFailure,
)
from shopkeys.grant import Account, Grant, Shop
from shopkeys.platform import Platform
from shopkeys.providers.base import Fields, Provider

TOKEN_CREATE = "/auth/token/create"
TOKEN_REFRESH = "/auth/token/refresh"

#: What the official SDKs put in `partner_id`; the gateway only records it.
PARTNER_ID = "shopkeys"

_FORM = "application/x-www-form-urlencoded"

# Every error code the platform documents (docs/platforms.md), and what it means for the caller.
ERROR_CLASSES: Mapping[str, type[ProviderError]] = {
    "MissingParameter": RequestRejected,
    "IncompleteSignature": RequestRejected,
    "InvalidAppKey": RequestRejected,
    "InvalidCode": AuthorizationDead,
    "IllegalRefreshToken": AuthorizationDead,
    # "The specified access token is invalid or expired": a refresh may still bring it back, so
    # only a failed refresh means the merchant must authorize again.
    "IllegalAccessToken": AccessExpired,
    "ApiCallLimit": RateLimited,
    # Documented for Lazada (the same IOP gateway), not for AliExpress: a refusal of this one
    # request, never a reason to mark a connection dead on the first attempt.
    "AUTH_TYPE_UNSUPPORTED": RequestRejected,
}

# "This ban will last 3 more seconds" and similar.
_BAN_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:more\s+)?(?:seconds?|secs?|s)\b", re.IGNORECASE)


def sign(app_secret: str, api_name: str, params: Mapping[str, str]) -> str:
    """The IOP signature: HMAC-SHA256 over the sorted `key+value` pairs, hex uppercase.

    System APIs (names with a `/`) put their name in front; business APIs do not, since their
    `method` is itself a signed parameter. `sign` itself is never signed.
    """
    pairs = "".join(f"{key}{params[key]}" for key in sorted(params) if key != "sign")
    message = (api_name + pairs) if "/" in api_name else pairs
    digest = hmac.new(app_secret.encode(), message.encode(), hashlib.sha256)
    return digest.hexdigest().upper()


def epoch_millis(moment: datetime) -> str:
    """A datetime as the gateway's `timestamp`: epoch milliseconds, as a string."""
    return str(int(moment.timestamp() * 1000))


def ban_seconds(message: str) -> float | None:
    """The ban length an `ApiCallLimit` message states, in seconds."""
    match = _BAN_SECONDS.search(message)
    if match is None:
        return None
    # A message can state any number of digits; only a finite wait is a wait.
    seconds = float(match.group(1))
    return seconds if math.isfinite(seconds) else None


class AliExpress(Provider):
    """AliExpress sellers through the Open Platform (api-sg.aliexpress.com)."""

    name: ClassVar[Platform] = Platform.ALIEXPRESS
    credential_names: ClassVar[CredentialNames] = CredentialNames("app_key", "app_secret")
    display_name: ClassVar[str] = "AliExpress"
    account_id_hint: ClassVar[str | None] = "the seller id"
    default_hosts: ClassVar[Mapping[str, str]] = {
        "auth": "https://api-sg.aliexpress.com",
        "api": "https://api-sg.aliexpress.com",
    }
    unscoped_permissions: ClassVar[str] = (
        "Use your AliExpress seller account through the APIs this app's category allows "
        "(orders, products and logistics)"
    )
    # AliExpress grants everything the app's category allows; it has no scope parameter.
    default_scopes: ClassVar[tuple[str, ...]] = ()
    # A launched app's access tokens live 30 days (the official refresh example answers with
    # exactly that); an app in test status gets less, but the gateway always states its expiry.
    default_access_lifetime: ClassVar[timedelta | None] = timedelta(days=30)
    # The official refresh example answers with 12 seconds short of 60 days of refresh: a refresh
    # keeps the refresh token's original deadline, so refreshing never pushes it back.
    renews_refresh_token: ClassVar[bool] = False

    def authorization_url(
        self, state: str, redirect_uri: str, scopes: Iterable[str] | None = None
    ) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "force_auth": "true",
                "client_id": self.credentials.client_id,
                "redirect_uri": redirect_uri,
                "state": state,
            }
        )
        return f"{self.url('auth', '/oauth/authorize')}?{query}"

    async def exchange_code(
        self, http: httpx2.AsyncClient, code: str, redirect_uri: str, **callback_params: str
    ) -> Grant:
        # The token call takes no redirect_uri: the code alone identifies the authorization.
        body = await self._system_call(http, TOKEN_CREATE, {"code": code}, secrets=(code,))
        return self._grant(body)

    async def refresh(self, http: httpx2.AsyncClient, refresh_token: str) -> Grant:
        body = await self._system_call(
            http, TOKEN_REFRESH, {"refresh_token": refresh_token}, secrets=(refresh_token,)
        )
        return self._grant(body)

    async def identify(self, http: httpx2.AsyncClient, grant: Grant) -> Account:
        """The seller from the token response itself; one AliExpress account is one shop."""
        raw = Fields(dict(grant.raw), provider=self.name, endpoint="identify")
        name = raw.opt_text("user_nick") or grant.account_name
        extra = {
            key: raw.get(key)
            for key in ("user_id", "seller_id", "account_platform", "locale")
            if raw.get(key) is not None
        }
        # `sp` names the site the seller is on ("ae"), not a region of the world.
        site = raw.opt_text("sp")
        if site:
            extra["site"] = site
        shop = Shop(id=grant.account_id, name=name, extra={"site": site} if site else {})
        return Account(account_id=grant.account_id, name=name, shops=[shop], extra=extra)

    def sign_request(self, request: httpx2.Request, access_token: str) -> httpx2.Request:
        """Add the system parameters, `session` and `sign` to a business call.

        They go into the query string, or into the form body when the request has one (the
        gateway reads both). The API name is the `method` parameter on `/sync`, or the path after
        `/rest` for system APIs called in the path shape.
        """
        path = self.platform_path(request.url.path)
        query = dict(request.url.params)
        form: dict[str, str] | None = None
        if request.headers.get("content-type", "").startswith(_FORM):
            try:
                form = dict(parse_qsl(request.read().decode(), keep_blank_values=True))
            except UnicodeDecodeError:
                raise BadApiCall("an AliExpress form body must be UTF-8") from None
        params = {**query, **(form or {})}
        if path.startswith("/rest/"):
            api_name = path[len("/rest") :]
        elif params.get("method"):
            api_name = params["method"]
        else:
            raise BadApiCall("an AliExpress API call needs a `method` parameter (the API name)")
        added = {
            "app_key": self.credentials.client_id,
            "timestamp": epoch_millis(self.clock()),
            "sign_method": "sha256",
            "session": access_token,
        }
        added["sign"] = sign(self.credentials.client_secret, api_name, {**params, **added})
        if form is None:
            request.url = request.url.copy_merge_params(added)
            return request
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        return httpx2.Request(
            request.method,
            request.url,
            headers=headers,
            content=urlencode({**form, **added}).encode(),
            extensions=request.extensions,
        )

    def classify(
        self, response: httpx2.Response, endpoint: str = "api", *, secrets: Iterable[str] = ()
    ) -> ProviderError | None:
        """The classified error for the gateway's answer to a call, or None when it succeeded.

        The gateway answers its errors with HTTP 200: flat `{"type", "code", "message"}` on
        `/rest`, wrapped `{"error_response": {"type", "code", "msg"}}` on `/sync`; a flat `code`
        other than "0" is an error too. 429 and 5xx are what their status says, whatever the
        body; any other non-2xx refused our request, with or without a readable error body. A 2xx
        that is no JSON object is a `ProtocolError`: the gateway answers JSON. `secrets` (what the
        request carried) never appear in the error, nor does the app secret.
        """
        error = self._status_error(response, endpoint)
        if error is not None:
            return error
        status = response.status_code
        try:
            body = self._json_object(response, endpoint)
        except ProtocolError as garbled:
            if response.is_success:
                return garbled
            # Any other status refused our request, whether or not it came with a readable
            # error body; the body's code says more when there is one.
            body = Fields({}, provider=self.name, endpoint=endpoint)
        try:
            error = self._error_in(body, status, endpoint, tuple(secrets))
        except ProtocolError as garbled:
            return garbled
        if error is None and not response.is_success:
            error = self._error(RequestRejected, endpoint, f"HTTP {status}", status=status)
        return error

    # -- plumbing -------------------------------------------------------------------------------

    async def _system_call(
        self,
        http: httpx2.AsyncClient,
        api_name: str,
        api_params: Mapping[str, str],
        *,
        secrets: tuple[str, ...],
    ) -> Fields:
        """POST a system API call to `/rest` as the official SDK does, and return its body."""
        endpoint = api_name
        params = {
            "app_key": self.credentials.client_id,
            "sign_method": "sha256",
            "timestamp": epoch_millis(self.clock()),
            "partner_id": PARTNER_ID,
            "method": api_name,
            "simplify": "false",
            "format": "json",
            **api_params,
        }
        params["sign"] = sign(self.credentials.client_secret, api_name, params)
        response = await self._send(
            http, "POST", self.url("api", "/rest"), endpoint=endpoint, data=params
        )
        error = self.classify(response, endpoint, secrets=secrets)
        if error is not None:
            raise error
        return self._json_object(response, endpoint)

    def _error_in(
        self, body: Fields, status: int, endpoint: str, secrets: tuple[str, ...] = ()
    ) -> ProviderError | None:
        """The classified error of a flat (`/rest`) or wrapped (`/sync`) error body, if it is one.

        A `ProtocolError` when the error body itself is garbled (`Fields` raises it).
        """
        if "error_response" in body:
            error = body.object("error_response")
        elif "code" in body and str(body.get("code")) != "0":
            error = body
        else:
            return None
        code = error.opt_text("code") or "unknown"
        message = error.opt_text("message") or error.opt_text("msg") or "no message"
        # A gateway may echo the rejected code or token back: `_error` never carries them further.
        return self._classify(code, error.opt_text("type"), message, endpoint, status, secrets)

    def _classify(
        self,
        code: str,
        kind: str | None,
        message: str,
        endpoint: str,
        status: int,
        secrets: tuple[str, ...] = (),
    ) -> ProviderError:
        cls = ERROR_CLASSES.get(code)
        if cls is RateLimited:
            return self._rate_limited(
                endpoint,
                message,
                code=code,
                status=status,
                retry_after=ban_seconds(message),
                secrets=secrets,
            )
        if cls is None:
            # Unknown codes: ISP (the API's service) and SYSTEM (the gateway) errors are the
            # platform failing on its side, so retrying later is sensible; ISV errors and
            # anything untyped are about our request.
            temporary = (kind or "").upper() in ("ISP", "SYSTEM")
            cls = TemporaryFailure if temporary else RequestRejected
        return self._error(cls, endpoint, message, code=code, status=status, secrets=secrets)

    def _grant(self, body: Fields) -> Grant:
        now = self.clock()
        access_expires = _expiry(body, "expire_time", "expires_in", now)
        refresh_expires = _expiry(body, "refresh_token_valid_time", "refresh_expires_in", now)
        # `refresh_expires_in` 0 means the grant cannot be refreshed: keep no refresh token, so
        # nothing ever tries, and the connection needs the merchant when the access token ends.
        refreshable = body.opt_number("refresh_expires_in") != 0
        if access_expires is None:
            # AliExpress tokens always expire: a response without either field still has one.
            access_expires = self._assumed_expiry(now, body.endpoint)
        account_id = body.id("seller_id") if body.get("seller_id") else body.id("user_id")
        return Grant(
            provider=self.name,
            access_token=body.token("access_token"),
            refresh_token=body.token("refresh_token") if refreshable else None,
            access_expires_at=access_expires,
            refresh_expires_at=refresh_expires if refreshable else None,
            scopes=[],
            account_id=account_id,
            account_name=body.opt_text("user_nick"),
            raw=body.without_tokens(),
        )


def _expiry(body: Fields, absolute: str, relative: str, now: datetime) -> datetime | None:
    """An expiry from the absolute epoch-milliseconds field, else from the seconds-left field.

    None when the response states neither (the gateway sends both for the access token, so
    the caller assumes the documented lifetime; the refresh fields are missing only for app types
    that cannot refresh).
    """
    moment = body.opt_moment(absolute, now, millis=True)
    if moment is not None:
        return moment
    life = body.opt_lifetime(relative)
    if life is not None:
        return now + life
    return None


#: The class `shopkeys.providers.get` finds for this platform.
PROVIDER = AliExpress
