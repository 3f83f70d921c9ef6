"""The AliExpress Open Platform (IOP gateway) simulator.

Paths (all of api-sg.aliexpress.com):
- `GET|POST /oauth/authorize`: the seller's authorization page (endpoint "authorize").
- `POST /rest` with `method=/auth/token/create|refresh` (the official SDK shape) and
  `POST /rest/auth/token/create|refresh` (the path shape): endpoints "token" and "refresh".
  Parameters may come in the form body, the query string or both (the body wins).
- `POST|GET /sync`: business APIs, named by `method`, each its own endpoint for faults:
  `aliexpress.merchant.profile.get` ("profile"; also any API the gateway does not know) and
  `aliexpress.solution.product.list.get` ("product_list"). Both need the seller's `session`.

`aliexpress.solution.product.list.get` (open platform docId 42384) takes
`aeop_a_e_product_list_query`, a JSON object (`product_status_type`: onSelling, offline, auditing
or editingRequired; `current_page`, default 1; `page_size`, 1 to 99, default 20; optional
`subject`) and answers `aliexpress_solution_product_list_get_response.result` with
`aeop_a_e_product_display_d_t_o_list.item_display_dto`, `current_page`, `total_page`,
`product_count` and `success` (field names from the TOP/IOP SDK models of the API, e.g.
bububa/opentaobao's `ItemListQuery`, `ItemListResultDto`, `ItemDisplayDto`). A missing or
unreadable query is refused with the gateway's `MissingParameter` / `InvalidParameter` (the
latter the simulator's choice: no source shows the code for a malformed JSON parameter).

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
import json
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
    "InvalidParameter": ("ISV", "The input parameter is invalid"),
    # The simulator's own code for a GET to a POST-only API (see the module docstring).
    "HttpMethodNotAllowed": ("ISV", "This API only accepts POST requests"),
    "ServiceUnavailable": ("ISP", "The service is temporarily unavailable"),
    "InternalError": ("SYSTEM", "The gateway failed to process the request"),
}

PROFILE_API = "aliexpress.merchant.profile.get"
PRODUCT_LIST_API = "aliexpress.solution.product.list.get"
#: The endpoint names of the business APIs on /sync, whose errors take the wrapped shape.
_BUSINESS_ENDPOINTS = frozenset({"profile", "product_list"})
_PRODUCT_STATUSES = frozenset({"onSelling", "offline", "auditing", "editingRequired"})
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
    """The IOP gateway; endpoints "authorize", "token", "refresh", "profile", "product_list"."""

    name: ClassVar[str] = "aliexpress"
    display_name: ClassVar[str] = "AliExpress"

    #: Whether a refresh hands out a new refresh token and kills the old one.
    rotate_refresh_tokens: bool = True
    #: The ban an `ApiCallLimit` error announces, in seconds.
    ban_seconds: int = 1
    #: How many products on sale each simulated seller has.
    products_per_seller: int = 45

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
        # One route serves every business API; each API is its own endpoint for faults.
        self._business = {
            PROFILE_API: self.endpoint("profile", self._profile),
            PRODUCT_LIST_API: self.endpoint("product_list", self._product_list),
        }
        methods = ["GET", "POST"]
        return [
            Route("/oauth/authorize", self.endpoint("authorize", self._authorize), methods=methods),
            Route("/rest", self._rest, methods=methods),
            Route("/rest/{api:path}", self._rest, methods=methods),
            Route("/sync", self._sync, methods=methods),
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
        if _serving.get() in _BUSINESS_ENDPOINTS:
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
        """Hand a business call to its API's endpoint; unknown APIs are refused by "profile"."""
        params = await _params(request)
        request.state.params = params
        handler = self._business.get(params.get("method", ""), self._business[PROFILE_API])
        return await handler(request)

    def _check_business_call(self, request: Request, api_name: str) -> _Access:
        """Verify a /sync call for `api_name`: app, signature, then the seller's session."""
        params: dict[str, str] = request.state.params
        method = _required(params, "method")
        self._verify(request, method, params)
        if method != api_name:
            raise _Problem("InvalidApiPath")
        session = _required(params, "session")
        access = self.access_tokens.get(session)
        if access is None or self.clock() >= access.expires_at:
            raise _Problem("IllegalAccessToken")
        return access

    async def _profile(self, request: Request) -> Response:
        try:
            access = self._check_business_call(request, PROFILE_API)
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

    async def _product_list(self, request: Request) -> Response:
        """`aliexpress.solution.product.list.get`: a page of the seller's products."""
        try:
            access = self._check_business_call(request, PRODUCT_LIST_API)
            query = _product_query(request.state.params)
        except _Problem as problem:
            return self._refuse(problem)
        status, page, size = query
        # Every simulated product is on sale: the other statuses find none.
        total = self.products_per_seller if status == "onSelling" else 0
        pages = max(1, -(-total // size))
        start = (page - 1) * size
        products = [
            _product(access.account, index) for index in range(start, min(total, start + size))
        ]
        result = {
            "success": True,
            "current_page": page,
            "total_page": pages,
            "product_count": total,
            "aeop_a_e_product_display_d_t_o_list": {"item_display_dto": products},
        }
        return JSONResponse(
            {
                "aliexpress_solution_product_list_get_response": {
                    "result": result,
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


def _product_query(params: Mapping[str, str]) -> tuple[str, int, int]:
    """Status, page and page size from `aeop_a_e_product_list_query` (a JSON object)."""
    raw = _required(params, "aeop_a_e_product_list_query")
    try:
        query = json.loads(raw)
    except ValueError:
        raise _Problem("InvalidParameter", "aeop_a_e_product_list_query is not JSON") from None
    if not isinstance(query, dict):
        raise _Problem("InvalidParameter", "aeop_a_e_product_list_query must be an object")
    status = query.get("product_status_type")
    if not status:
        raise _Problem("MissingParameter", "Missing parameter: product_status_type")
    if status not in _PRODUCT_STATUSES:
        raise _Problem("InvalidParameter", "Invalid product_status_type")
    page = _whole(query.get("current_page", 1), 1, 10**6)
    size = _whole(query.get("page_size", 20), 1, 99)
    if page is None or size is None:
        raise _Problem("InvalidParameter", "current_page must be 1 or more, page_size 1 to 99")
    return status, page, size


def _whole(value: object, low: int, high: int) -> int | None:
    """A whole number sent as a JSON number or a string of digits, within [low, high]."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        value = int(value)
    return value if isinstance(value, int) and low <= value <= high else None


def _product(account: SimAccount, index: int) -> dict[str, Any]:
    """The seller's `index`-th product as an `item_display_dto`."""
    product_id = int("1005" + SimAccount(f"{account.login}#{index}").digits(12, "product"))
    cents = 199 + int(SimAccount(str(product_id)).digits(6, "price")) % 9800
    created = datetime(2024, 1, 1) + timedelta(hours=int(account.digits(4, f"p{index}")))
    stamp = created.strftime("%Y-%m-%d %H:%M:%S")
    return {
        "product_id": product_id,
        "subject": f"Sandbox product {index + 1}",
        "product_min_price": f"{cents / 100:.2f}",
        "product_max_price": f"{cents / 100:.2f}",
        "currency_code": "USD",
        "owner_member_id": account.login,
        "owner_member_seq": int(account.digits(10, "seller")),
        "image_u_r_ls": f"https://ae01.alicdn.com/kf/S{product_id}.jpg",
        "src": "isv",
        "ws_display": "",
        "ws_offline_date": "",
        "group_id": 0,
        "freight_template_id": int(account.digits(10, "freight")),
        "gmt_create": stamp,
        "gmt_modified": stamp,
    }


def _life(seconds: float | None) -> float:
    return _FAR if seconds is None else seconds


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _alnum(count: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(count))


#: The class the sandbox serves for this platform.
SIMULATOR = AliExpressSimulator
