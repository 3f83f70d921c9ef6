"""The AliExpress Open Platform (IOP gateway) simulator.

Paths (all of api-sg.aliexpress.com):
- `GET|POST /oauth/authorize`: the seller's authorization page (endpoint "authorize").
- `POST /rest` with `method=/auth/token/create|refresh` (the official SDK shape) and
  `POST /rest/auth/token/create|refresh` (the path shape): endpoints "token" and "refresh".
  Parameters may come in the form body, the query string or both (the body wins).
- `POST|GET /sync`: business APIs; `aliexpress.merchant.profile.get` (endpoint "profile").

Strict like the gateway: app key, `sign_method=sha256`, epoch-millisecond timestamps within
7200 s of the simulator's clock, the HMAC-SHA256 signature (`sandbox.signatures`, not the
provider's code), single-use 30-minute codes.

The token APIs are POST only, as their documentation states. A GET to either shape is refused
before anything else is looked at (the code is not used up, the refresh token not rotated) with
HTTP 405, `Allow: POST` and the gateway's flat error body, code `HttpMethodNotAllowed` and a
message saying POST is required. That code is the simulator's own: no source shows which code the
real gateway answers a GET with.

A refresh renews the access token and, by default (`rotate_refresh_tokens`), hands out a new
refresh token and kills the one it was given, which from then on gets `IllegalRefreshToken`: the
docs tell clients to always keep the latest refresh token, so a client that does not must fail
here. The new refresh token keeps the original one's expiry. With `rotate_refresh_tokens` off, the
same refresh token string comes back and stays usable.
"""

from __future__ import annotations

import contextvars
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from shopkeys.sandbox.authorize_page import error_page, read_decision
from shopkeys.sandbox.core import (
    CodeProblem,
    Handler,
    Lifetimes,
    SimAccount,
    Simulator,
    random_token,
    with_query,
)
from shopkeys.sandbox.signatures import aliexpress_sign

DAY = 86_400.0
#: Timestamps further than this from the gateway's clock are refused (Lazada documents 7200 s).
TIMESTAMP_WINDOW = 7200.0
#: Stand-in for "never expires" where the response must carry a number.
_FAR = 100 * 365 * DAY

# Error codes the gateway answers with: (type, message).
ERRORS: dict[str, tuple[str, str]] = {
    "MissingParameter": ("ISV", "The input parameter is missing"),
    "IncompleteSignature": ("ISV", "The request signature does not conform to platform standards"),
    "InvalidCode": ("ISV", "Invalid authorization code"),
    "IllegalRefreshToken": ("ISV", "Illegal refresh token"),
    "IllegalAccessToken": ("ISV", "The specified access token is invalid or expired"),
    "InvalidAppKey": ("ISV", "Invalid app key"),
    "ApiCallLimit": ("ISV", "The request has exceeded the limit."),
    "AUTH_TYPE_UNSUPPORTED": ("ISV", "The app is not allowed to refresh tokens"),
    "InvalidTimestamp": ("ISV", "The timestamp is more than 7200 seconds away from now"),
    "InvalidApiPath": ("ISV", "The specified API path is invalid"),
    # The simulator's own code for a GET to a POST-only API (see the module docstring).
    "HttpMethodNotAllowed": ("ISV", "This API only accepts POST requests"),
    "ServiceUnavailable": ("ISP", "The service is temporarily unavailable"),
    "InternalError": ("SYSTEM", "The gateway failed to process the request"),
}

PROFILE_API = "aliexpress.merchant.profile.get"
TOKEN_CREATE_API = "/auth/token/create"
TOKEN_REFRESH_API = "/auth/token/refresh"

# Which endpoint a request is being served by, so fault-injected errors take that API's shape.
_serving: contextvars.ContextVar[str] = contextvars.ContextVar("aliexpress_endpoint", default="")


@dataclass(slots=True)
class _Refresh:
    account: SimAccount
    expires_at: datetime


@dataclass(slots=True)
class _Access:
    account: SimAccount
    expires_at: datetime


class _Problem(Exception):
    """A request the gateway refuses, with its error code and message."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


class AliExpressSimulator(Simulator):
    """The IOP gateway; endpoints "authorize", "token", "refresh", "profile"."""

    name: ClassVar[str] = "aliexpress"
    display_name: ClassVar[str] = "AliExpress"

    #: Whether a refresh hands out a new refresh token and kills the old one.
    rotate_refresh_tokens: bool = True
    #: The ban an `ApiCallLimit` error announces, in seconds.
    ban_seconds: int = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_tokens: dict[str, _Access] = {}
        self.refresh_tokens: dict[str, _Refresh] = {}

    @classmethod
    def default_lifetimes(cls) -> Lifetimes:
        # An app in test status: 1 day access, 2 days refresh; codes 30 minutes.
        return Lifetimes(code=1800.0, access=DAY, refresh=2 * DAY)

    def endpoint(self, name: str, handler: Handler) -> Handler:
        guarded = super().endpoint(name, handler)

        async def serving(request: Request) -> Response:
            marker = _serving.set(name)
            try:
                return await guarded(request)
            finally:
                _serving.reset(marker)

        return serving

    def routes(self) -> list[BaseRoute]:
        self._token = self.endpoint("token", self._create_token)
        self._refresh = self.endpoint("refresh", self._refresh_token)
        methods = ["GET", "POST"]
        return [
            Route("/oauth/authorize", self.endpoint("authorize", self._authorize), methods=methods),
            Route("/rest", self._rest, methods=methods),
            Route("/rest/{api:path}", self._rest, methods=methods),
            Route("/sync", self.endpoint("profile", self._sync), methods=methods),
        ]

    # -- errors ---------------------------------------------------------------------------------

    def platform_error(self, code: str) -> Response:
        return self._error_response(code)

    def _refuse(self, problem: _Problem) -> Response:
        return self._error_response(problem.code, problem.message)

    def _error_response(
        self, code: str, message: str | None = None, *, status: int = 200
    ) -> Response:
        kind, default = ERRORS.get(code, ("ISV", "The request was refused"))
        if message is None:
            message = default
            if code == "ApiCallLimit":
                message += f" This ban will last {self.ban_seconds} more seconds"
        request_id = secrets.token_hex(8)
        if _serving.get() == "profile":
            # Business APIs on /sync wrap their errors, and call the message `msg`.
            wrapped = {"type": kind, "code": code, "msg": message, "request_id": request_id}
            return JSONResponse({"error_response": wrapped})
        headers = {"Allow": "POST"} if status == 405 else None
        return JSONResponse(
            {"type": kind, "code": code, "message": message, "request_id": request_id},
            status_code=status,
            headers=headers,
        )

    # -- the authorization page -----------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        query = request.query_params
        if query.get("client_id") != self.app.client_id:
            return error_page(self.display_name, "Invalid client_id: no such app.")
        if query.get("redirect_uri") != self.app.redirect_uri:
            # Never send a code to an address the app did not register.
            return error_page(
                self.display_name, "The redirect_uri does not match the app's callback URL."
            )
        if query.get("response_type") != "code":
            return error_page(self.display_name, "response_type must be 'code'.")
        if request.method == "GET":
            return self.consent_page(request)
        decision = await read_decision(request)
        state = {"state": query["state"]} if "state" in query else {}
        if not decision.approved:
            # What Alibaba's OAuth server sends when the user cancels.
            params = {"error": "access_denied", "error_description": "authorize reject", **state}
            return RedirectResponse(with_query(self.app.redirect_uri, params), status_code=302)
        code = f"3_{self.app.client_id}_{_alnum(32)}"
        self.codes.issue(code, SimAccount(decision.login), self.lifetimes.code)
        location = with_query(self.app.redirect_uri, {"code": code, **state})
        return RedirectResponse(location, status_code=302)

    # -- system APIs on /rest -------------------------------------------------------------------

    async def _rest(self, request: Request) -> Response:
        params = await _params(request)
        path_api = request.path_params.get("api")
        api_name = f"/{path_api}" if path_api else params.get("method", "")
        request.state.api_name = api_name
        request.state.params = params
        if api_name in (TOKEN_CREATE_API, TOKEN_REFRESH_API) and request.method != "POST":
            message = f"The API {api_name} only accepts POST requests; this was a {request.method}"
            return self._error_response("HttpMethodNotAllowed", message, status=405)
        if api_name == TOKEN_CREATE_API:
            return await self._token(request)
        if api_name == TOKEN_REFRESH_API:
            return await self._refresh(request)
        if not api_name:
            return self._refuse(_Problem("MissingParameter", "Missing parameter: method"))
        return self._refuse(_Problem("InvalidApiPath"))

    async def _create_token(self, request: Request) -> Response:
        params: dict[str, str] = request.state.params
        try:
            self._verify(request, request.state.api_name, params)
            code = _required(params, "code")
            try:
                issued = self.codes.redeem(code)
            except CodeProblem as problem:
                raise _Problem(
                    "InvalidCode", f"Invalid authorization code ({problem.reason})"
                ) from None
        except _Problem as problem:
            return self._refuse(problem)
        account = issued.account
        now = self.clock()
        refresh_token = random_token("50001", 24)
        refresh = _Refresh(account, now + timedelta(seconds=_life(self.lifetimes.refresh)))
        self.refresh_tokens[refresh_token] = refresh
        # One moment for both expiries, so a new grant's two lifetimes start together.
        return self._token_response(account, refresh_token, refresh, now)

    async def _refresh_token(self, request: Request) -> Response:
        params: dict[str, str] = request.state.params
        try:
            self._verify(request, request.state.api_name, params)
            refresh_token = _required(params, "refresh_token")
            refresh = self.refresh_tokens.get(refresh_token)
            if refresh is None or self.clock() >= refresh.expires_at:
                raise _Problem("IllegalRefreshToken")
        except _Problem as problem:
            return self._refuse(problem)
        if self.rotate_refresh_tokens:
            del self.refresh_tokens[refresh_token]
            refresh_token = random_token("50001", 24)
            self.refresh_tokens[refresh_token] = refresh
        # The access token's lifetime starts again; the refresh token's expiry stays put.
        return self._token_response(refresh.account, refresh_token, refresh, self.clock())

    def _token_response(
        self, account: SimAccount, refresh_token: str, refresh: _Refresh, now: datetime
    ) -> Response:
        access_token = random_token("50000", 24)
        access_expires = now + timedelta(seconds=_life(self.lifetimes.access))
        self.access_tokens[access_token] = _Access(account, access_expires)
        seller_id = account.digits(10, "seller")
        return JSONResponse(
            {
                "access_token": access_token,
                "refresh_token": refresh_token,
                "expires_in": max(0, int((access_expires - now).total_seconds())),
                "refresh_expires_in": max(0, int((refresh.expires_at - now).total_seconds())),
                "expire_time": _millis(access_expires),
                "refresh_token_valid_time": _millis(refresh.expires_at),
                "user_id": account.digits(10, "user"),
                "seller_id": seller_id,
                "havana_id": account.digits(13, "havana"),
                "account_id": account.digits(10, "account"),
                "account": account.email,
                "account_platform": "seller_center",
                "user_nick": account.login,
                "locale": "en_US",
                "sp": "ae",
                "code": "0",
                "request_id": secrets.token_hex(8),
            }
        )

    # -- business APIs on /sync -----------------------------------------------------------------

    async def _sync(self, request: Request) -> Response:
        params = await _params(request)
        try:
            api_name = _required(params, "method")
            self._verify(request, api_name, params)
            if api_name != PROFILE_API:
                raise _Problem("InvalidApiPath")
            session = _required(params, "session")
            access = self.access_tokens.get(session)
            if access is None or self.clock() >= access.expires_at:
                raise _Problem("IllegalAccessToken")
        except _Problem as problem:
            return self._refuse(problem)
        account = access.account
        profile = {
            "country_code": "CN",
            "merchant_login_id": account.login,
            "shop_id": int(account.digits(9, "shop")),
            "shop_name": account.display_name,
            "shop_type": "normal",
            "shop_url": f"https://www.aliexpress.com/store/{account.digits(9, 'shop')}",
            "product_posting_forbidden": False,
        }
        return JSONResponse(
            {
                "aliexpress_merchant_profile_get_response": {
                    "profile": profile,
                    "request_id": secrets.token_hex(8),
                }
            }
        )

    # -- verification shared by every API -------------------------------------------------------

    def _verify(self, request: Request, api_name: str, params: Mapping[str, str]) -> None:
        for key in ("app_key", "timestamp", "sign_method", "sign"):
            _required(params, key)
        if params["app_key"] != self.app.client_id:
            raise _Problem("InvalidAppKey")
        if params["sign_method"] != "sha256":
            raise _Problem("IncompleteSignature", "Unsupported sign_method")
        try:
            sent = float(params["timestamp"]) / 1000
        except ValueError:
            raise _Problem("InvalidTimestamp", "The timestamp is not epoch milliseconds") from None
        if abs(sent - self.clock().timestamp()) > TIMESTAMP_WINDOW:
            raise _Problem("InvalidTimestamp")
        # System API names may also be signed as seen through the mount (docs/platforms.md,
        # "AliExpress").
        names = [api_name]
        if "/" in api_name:
            names.append(request.scope.get("root_path", "") + api_name)
        expected = [aliexpress_sign(self.app.client_secret, name, params) for name in names]
        if not any(secrets.compare_digest(params["sign"], e) for e in expected):
            raise _Problem("IncompleteSignature")


async def _params(request: Request) -> dict[str, str]:
    """Query parameters plus form fields, the two places the gateway reads (form wins)."""
    params = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _required(params: Mapping[str, str], key: str) -> str:
    value = params.get(key)
    if not value:
        raise _Problem("MissingParameter", f"Missing parameter: {key}")
    return value


def _life(seconds: float | None) -> float:
    return _FAR if seconds is None else seconds


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _alnum(count: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(count))


#: The class the sandbox serves for this platform.
SIMULATOR = AliExpressSimulator
