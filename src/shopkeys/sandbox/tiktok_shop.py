"""A strict simulator of TikTok Shop's authorization, token, shop and business endpoints.

Business calls (API version 202309) are verified as the gateway does: app key, timestamp, the
signature over path, query and (for JSON bodies) the raw body, the `x-tts-access-token` header,
then the shop. Shop-level APIs need a `shop_cipher` of a shop of the token's authorization;
shopless ones (`/authorization/...`, `/seller/...`) must not carry one.

Error codes for the shop checks, and where they come from (none is on a Partner Center page this
project could read, so each is the best public evidence, not a capture):
- 106011 "Invalid shop_cipher": a cipher that is not one of the authorization's shops. The code and
  message that several public TikTok Shop integrations report in comments and mock in tests.
- 106013 "Missing identifier": no `shop_cipher` on a shop-level API. Two third-party error maps
  (citing Partner Center "common errors") give 106013 for a missing shop_cipher; unconfirmed.
- 36009004 with "shop_cipher is not allowed in this api": a cipher on a shopless API. The message
  is what the gateway answered EcomPHP/tiktokshop-php (PR #45, which then strips `shop_cipher`
  from `/authorization/` and `/seller/` paths); the code is the one Partner Center's common
  errors reuse for unexpected identifiers (per the same third-party maps); unconfirmed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from shopkeys.clock import from_epoch_seconds
from shopkeys.sandbox import authorize_page
from shopkeys.sandbox.core import (
    CodeProblem,
    Lifetimes,
    SimAccount,
    Simulator,
    random_token,
    with_query,
)
from shopkeys.sandbox.signatures import (
    tiktok_shop_sign,
    tiktok_shop_signs_body,
    tiktok_shop_webhook_signature,
)

# The platform's paths and header, as its documentation names them.
TOKEN_GET_PATH: Final = "/api/v2/token/get"
TOKEN_REFRESH_PATH: Final = "/api/v2/token/refresh"
SHOPS_PATH: Final = "/authorization/202309/shops"
#: Get Active Shops (seller scope, shopless).
ACTIVE_SHOPS_PATH: Final = "/seller/202309/shops"
#: Get Order Detail: `GET` with `ids`, a comma-separated list of up to 50 order ids.
ORDERS_PATH: Final = "/order/202309/orders"
#: Search Products: `POST`, `page_size` (1-100) and `page_token` in the query, filters in a JSON
#: body that the signature covers.
PRODUCTS_SEARCH_PATH: Final = "/product/202309/products/search"
ACCESS_TOKEN_HEADER: Final = "x-tts-access-token"

# The platform's wording for each error code it answers with.
MESSAGES: Final[Mapping[int, str]] = {
    36004004: "Invalid auth code. The auth code is invalid, expired or has been used.",
    36004001: "The refresh token is expired.",
    36004005: "The authorization does not exist or has been revoked.",
    105001: "Invalid credentials. The access token is invalid.",
    105002: "Expired credentials. The access token is expired, please refresh it.",
    105005: "Access denied. The app has no permission for this API.",
    106001: "Invalid credentials. The 'sign' query parameter is invalid.",
    106011: "Invalid shop_cipher",
    106013: "Missing identifier. This API needs the shop_cipher query parameter.",
    36009004: "Invalid request. The app key, timestamp or access token header is invalid.",
    36009002: "Too many requests. Please retry later.",
    36009003: "Internal error. Please retry later.",
}
# Only a bad signature is answered with an HTTP error status; everything else is HTTP 200.
_STATUS: Final[Mapping[int, int]] = {106001: 401}

GRANTED_SCOPES: Final = (
    "seller.authorization.info",
    "seller.shop.info",
    "seller.order.info",
    "seller.product.basic",
)
_REGIONS: Final = ("GB", "US", "ID", "MY", "TH", "VN", "PH", "SG", "MX", "ES")
# What the platform answers when a lifetime is configured as "never": a century ahead, which is
# also what its real refresh tokens get.
_CENTURY: Final = 100 * 365 * 86400


@dataclass(slots=True)
class Authorization:
    """One seller's grant to the app; a deauthorization revokes it and every token it issued."""

    account: SimAccount
    region: str
    scopes: tuple[str, ...]
    revoked: bool = False

    @property
    def open_id(self) -> str:
        return self.account.hex(32, "open_id")

    def shops(self) -> list[dict[str, str]]:
        return [
            {
                "id": self.account.digits(19, "shop"),
                "name": self.account.display_name,
                "region": self.region,
                "code": f"{self.region}LC{self.account.hex(6, 'code').upper()}",
                "cipher": "ROW_" + self.account.hex(32, "cipher"),
                "seller_type": "LOCAL",
            }
        ]


@dataclass(slots=True)
class IssuedToken:
    authorization: Authorization
    expires_at: datetime = field(repr=False)


class _Refused(Exception):
    """Stops a handler with the platform's error answer for `code` (and a more precise message:
    the gateway reuses 36009004 for many invalid requests and says which in the message)."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


class TikTokShopSimulator(Simulator):
    """TikTok Shop, folded onto one host.

    Endpoint names for fault injection: "authorize" (both authorization pages), "token"
    (`/api/v2/token/get`), "refresh" (`/api/v2/token/refresh`), "shops"
    (`GET /authorization/202309/shops`), "active_shops" (`GET /seller/202309/shops`), "orders"
    (`GET /order/202309/orders`), "products" (`POST /product/202309/products/search`).
    """

    name: ClassVar[str] = "tiktok_shop"
    display_name: ClassVar[str] = "TikTok Shop"

    #: (open) TikTok documents no decline callback. True: Deny sends the browser to the
    #: registered redirect URI with `error=access_denied` and the state; False: it stays here.
    decline_callback: bool = True
    #: (open) Whether a refresh issues a new refresh token and kills the old one (36004005).
    rotate_refresh_tokens: bool = True
    #: How far a signed request's timestamp may be from now, in seconds.
    timestamp_tolerance: float = 300.0
    #: How many products each simulated shop has, for Search Products' paging.
    products_per_shop: int = 45

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_tokens: dict[str, IssuedToken] = {}
        self.refresh_tokens: dict[str, IssuedToken] = {}
        self.authorizations: list[Authorization] = []

    @classmethod
    def default_lifetimes(cls) -> Lifetimes:
        # Access: 7 days (captured: expiry = issue time + 604800). Refresh: about a century ahead
        # (captured). Code: undocumented (open), 10 minutes.
        return Lifetimes(code=600, access=7 * 86400, refresh=_CENTURY)

    def routes(self) -> list[BaseRoute]:
        authorize = self.endpoint("authorize", self._authorize)
        return [
            Route("/open/authorize", authorize, methods=["GET", "POST"]),
            Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
            Route(TOKEN_GET_PATH, self.endpoint("token", self._token), methods=["GET"]),
            Route(TOKEN_REFRESH_PATH, self.endpoint("refresh", self._refresh), methods=["GET"]),
            Route(SHOPS_PATH, self.endpoint("shops", self._shops), methods=["GET"]),
            Route(
                ACTIVE_SHOPS_PATH,
                self.endpoint("active_shops", self._active_shops),
                methods=["GET"],
            ),
            Route(ORDERS_PATH, self.endpoint("orders", self._orders), methods=["GET"]),
            Route(
                PRODUCTS_SEARCH_PATH,
                self.endpoint("products", self._search_products),
                methods=["POST"],
            ),
        ]

    def platform_error(self, code: str) -> Response:
        try:
            number = int(code)
        except ValueError:
            number = 36009003
        return self._error(number)

    def _error(self, number: int, message: str | None = None) -> Response:
        body = {
            "code": number,
            "message": message or MESSAGES.get(number, "Unknown error."),
            "request_id": self._request_id(),
            "data": None,
        }
        return JSONResponse(body, status_code=_STATUS.get(number, 200))

    def _refusal(self, refused: _Refused) -> Response:
        return self._error(refused.code, refused.message)

    def webhook(self, payload: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
        """A signed webhook; a type-6 deauthorization also revokes that shop's authorizations."""
        now = int(self.clock().timestamp())
        message = {
            "type": 6,
            # TikTok's id of the notification: a retried delivery carries the same one.
            "tts_notification_id": str(secrets.randbelow(10**19)),
            "shop_id": "",
            "timestamp": now,
            "data": {},
            **payload,
        }
        if message["type"] == 7 and not payload.get("data"):
            # The documented shape: a message, and the expiry as unix seconds in a string.
            message["data"] = {
                "message": f"Authorization of shop_id {message['shop_id']} is expiring in 7 days",
                "expiration_time": str(now + 7 * 86400),
            }
        if message["type"] == 6:
            self.deauthorize(str(message["shop_id"]))
        body = json.dumps(message, separators=(",", ":")).encode()
        signature = tiktok_shop_webhook_signature(self.app.client_id, self.app.client_secret, body)
        return {"Authorization": signature, "Content-Type": "application/json"}, body

    def deauthorize(self, shop_id: str) -> int:
        """Revoke every authorization that covers `shop_id`; how many there were."""
        hits = [a for a in self.authorizations if any(s["id"] == shop_id for s in a.shops())]
        for authorization in hits:
            authorization.revoked = True
        return len(hits)

    # -- authorization page -----------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        query = request.query_params
        if request.url.path.endswith("/open/authorize"):
            known = bool(self.app.service_id) and query.get("service_id") == self.app.service_id
            what = "service"
        else:
            known = query.get("app_key") == self.app.client_id
            what = "app"
        if not known:
            return authorize_page.error_page(self.display_name, f"This {what} does not exist.")
        if request.method == "GET":
            return self.consent_page(request, GRANTED_SCOPES)
        decision = await authorize_page.read_decision(request)
        state = query.get("state", "")
        # TikTok ignores any redirect_uri: it sends the seller to the app's registered one.
        if not decision.approved:
            if not self.decline_callback:
                return authorize_page.error_page(
                    self.display_name, "You cancelled the authorization.", status_code=200
                )
            params = {"app_key": self.app.client_id, "error": "access_denied", "state": state}
            return RedirectResponse(with_query(self.app.redirect_uri, params), status_code=302)
        account = SimAccount(decision.login)
        region = _REGIONS[int(account.digits(4, "region")) % len(_REGIONS)]
        code = random_token("TTP_")
        self.codes.issue(code, account, self.lifetimes.code, scopes=GRANTED_SCOPES)
        params = {
            "app_key": self.app.client_id,
            "code": code,
            "locale": "en",
            "shop_region": region,
            "state": state,
        }
        return RedirectResponse(with_query(self.app.redirect_uri, params), status_code=302)

    # -- tokens -----------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        query = request.query_params
        try:
            self._check_app(query.get("app_key"), query.get("app_secret"))
            if query.get("grant_type") != "authorized_code":
                raise _Refused(36009004)
            try:
                issued = self.codes.redeem(query.get("auth_code", ""))
            except CodeProblem:
                raise _Refused(36004004) from None
        except _Refused as refused:
            return self.platform_error(str(refused.code))
        return self._token_answer(self._authorize_account(issued.account, issued.scopes))

    def _authorize_account(self, account: SimAccount, scopes: tuple[str, ...]) -> Authorization:
        region = _REGIONS[int(account.digits(4, "region")) % len(_REGIONS)]
        authorization = Authorization(account=account, region=region, scopes=scopes)
        self.authorizations.append(authorization)
        return authorization

    def issue_grants(self, logins: Sequence[str]) -> list[dict[str, Any]]:
        """The `data` of `/api/v2/token/get` for a fresh authorization of each login."""
        return [
            self._token_data(self._authorize_account(SimAccount(login), GRANTED_SCOPES))
            for login in logins
        ]

    async def _refresh(self, request: Request) -> Response:
        query = request.query_params
        try:
            self._check_app(query.get("app_key"), query.get("app_secret"))
            # The official Node SDK sends `authorized_code` here too, and it works.
            if query.get("grant_type") not in ("refresh_token", "authorized_code"):
                raise _Refused(36009004)
            value = query.get("refresh_token", "")
            issued = self.refresh_tokens.get(value)
            if issued is None or issued.authorization.revoked:
                raise _Refused(36004005)
            if self.clock() >= issued.expires_at:
                raise _Refused(36004001)
        except _Refused as refused:
            return self.platform_error(str(refused.code))
        if self.rotate_refresh_tokens:
            del self.refresh_tokens[value]
            return self._token_answer(issued.authorization)
        return self._token_answer(issued.authorization, keep_refresh=(value, issued))

    def _check_app(self, app_key: str | None, app_secret: str | None) -> None:
        if app_key != self.app.client_id or not hmac.compare_digest(
            (app_secret or "").encode(), self.app.client_secret.encode()
        ):
            raise _Refused(36009004)

    def _token_answer(
        self,
        authorization: Authorization,
        keep_refresh: tuple[str, IssuedToken] | None = None,
    ) -> Response:
        data = self._token_data(authorization, keep_refresh)
        return JSONResponse(
            {"code": 0, "message": "success", "request_id": self._request_id(), "data": data}
        )

    def _token_data(
        self,
        authorization: Authorization,
        keep_refresh: tuple[str, IssuedToken] | None = None,
    ) -> dict[str, Any]:
        access = random_token("ROW_")
        access_expiry = self._expiry(self.lifetimes.access)
        self.access_tokens[access] = IssuedToken(authorization, access_expiry)
        if keep_refresh is None:
            refresh = random_token("ROW_")
            refresh_expiry = self._expiry(self.lifetimes.refresh)
            self.refresh_tokens[refresh] = IssuedToken(authorization, refresh_expiry)
        else:
            refresh, kept = keep_refresh
            refresh_expiry = kept.expires_at
        data = {
            "access_token": access,
            "access_token_expire_in": int(access_expiry.timestamp()),
            "refresh_token": refresh,
            "refresh_token_expire_in": int(refresh_expiry.timestamp()),
            "open_id": authorization.open_id,
            "seller_name": authorization.account.display_name,
            "seller_base_region": authorization.region,
            "user_type": 0,
            "granted_scopes": list(authorization.scopes),
        }
        return data

    def _expiry(self, lifetime: float | None) -> datetime:
        """An absolute expiry on whole seconds, as the platform sends it."""
        seconds = _CENTURY if lifetime is None else lifetime
        return from_epoch_seconds(int((self.clock() + timedelta(seconds=seconds)).timestamp()))

    # -- API --------------------------------------------------------------------------------------

    def _success(self, data: Mapping[str, Any]) -> Response:
        return JSONResponse(
            {"code": 0, "message": "success", "request_id": self._request_id(), "data": data}
        )

    async def _shops(self, request: Request) -> Response:
        try:
            issued = await self._check_shopless_call(request)
        except _Refused as refused:
            return self._refusal(refused)
        return self._success({"shops": issued.authorization.shops()})

    async def _active_shops(self, request: Request) -> Response:
        """Get Active Shops: the seller's shops and their regions (no ciphers)."""
        try:
            issued = await self._check_shopless_call(request)
        except _Refused as refused:
            return self._refusal(refused)
        shops = [{"id": s["id"], "region": s["region"]} for s in issued.authorization.shops()]
        return self._success({"shops": shops})

    async def _orders(self, request: Request) -> Response:
        """Get Order Detail: every id asked for, each a deterministic order of that shop."""
        try:
            shop = await self._check_shop_call(request, "seller.order.info")
            ids = [i for i in request.query_params.get("ids", "").split(",") if i]
            if not ids:
                raise _Refused(36009004, "Invalid request. The 'ids' query parameter is required.")
            if len(ids) > _MAX_ORDER_IDS or not all(i.isascii() and i.isdigit() for i in ids):
                raise _Refused(
                    36009004,
                    f"Invalid request. 'ids' takes 1 to {_MAX_ORDER_IDS} numeric order ids.",
                )
        except _Refused as refused:
            return self._refusal(refused)
        return self._success({"orders": [_order(shop, order_id) for order_id in ids]})

    async def _search_products(self, request: Request) -> Response:
        """Search Products: the shop's catalogue a page at a time, filtered by `status`."""
        try:
            shop = await self._check_shop_call(request, "seller.product.basic")
            query = request.query_params
            page_size = _int_in(query.get("page_size"), 1, 100)
            if page_size is None:
                raise _Refused(36009004, "Invalid request. 'page_size' is required, from 1 to 100.")
            offset = _offset(query.get("page_token", ""))
            if offset is None:
                raise _Refused(36009004, "Invalid request. The 'page_token' is invalid.")
            filters = await _json_object(request)
            status = filters.get("status", "ALL")
            if status not in _PRODUCT_STATUSES:
                raise _Refused(36009004, "Invalid request. Unknown product 'status'.")
        except _Refused as refused:
            return self._refusal(refused)
        # Every simulated product is live, so only ALL and ACTIVATE find any.
        total = self.products_per_shop if status in ("ALL", "ACTIVATE") else 0
        end = min(total, offset + page_size)
        products = [_product(shop, index) for index in range(offset, end)]
        next_token = _page_token(end) if end < total else ""
        return self._success(
            {"products": products, "next_page_token": next_token, "total_count": total}
        )

    async def _check_shopless_call(self, request: Request) -> IssuedToken:
        """A verified call to an API that is not about one shop: it must carry no shop_cipher."""
        issued = await self._check_api_call(request)
        if "shop_cipher" in request.query_params:
            raise _Refused(36009004, "Invalid request. shop_cipher is not allowed in this api.")
        return issued

    async def _check_shop_call(self, request: Request, scope: str) -> dict[str, str]:
        """A verified call to a shop-level API: the shop its cipher names, which must be one of
        the token's authorization, whose grant must include `scope`."""
        issued = await self._check_api_call(request)
        cipher = request.query_params.get("shop_cipher", "")
        if not cipher:
            raise _Refused(106013)
        shop = next((s for s in issued.authorization.shops() if s["cipher"] == cipher), None)
        if shop is None:
            raise _Refused(106011)
        if scope not in issued.authorization.scopes:
            raise _Refused(105005)
        return shop

    async def _check_api_call(self, request: Request) -> IssuedToken:
        """Verify app key, timestamp, signature and access token, as the API gateway does."""
        params = dict(request.query_params)
        if params.get("app_key") != self.app.client_id:
            raise _Refused(36009004)
        try:
            timestamp = int(params.get("timestamp", ""))
        except ValueError:
            raise _Refused(36009004) from None
        if abs(self.clock().timestamp() - timestamp) > self.timestamp_tolerance:
            raise _Refused(36009004)
        body = b""
        if tiktok_shop_signs_body(request.method, request.headers.get("content-type")):
            body = await request.body()
        root = request.scope.get("root_path", "")
        full = request.url.path
        own = full[len(root) :] if root and full.startswith(root) else full
        received = params.get("sign", "")
        # A client pointed at the mount signs the path it sends; shopkeys signs the platform's.
        valid = any(
            hmac.compare_digest(
                tiktok_shop_sign(self.app.client_secret, path, params, body).encode(),
                received.encode(),
            )
            for path in {own, root + own}
        )
        if not valid:
            raise _Refused(106001)
        token = request.headers.get(ACCESS_TOKEN_HEADER)
        if not token:
            raise _Refused(36009004)
        issued = self.access_tokens.get(token)
        if issued is None or issued.authorization.revoked:
            raise _Refused(105001)
        if self.clock() >= issued.expires_at:
            raise _Refused(105002)
        return issued

    def _request_id(self) -> str:
        return self.clock().strftime("%Y%m%d%H%M%S") + secrets.token_hex(9).upper()


# -- business data ------------------------------------------------------------------------------

_MAX_ORDER_IDS: Final = 50
_PRODUCT_STATUSES: Final = frozenset(
    {
        "ALL",
        "DRAFT",
        "PENDING",
        "FAILED",
        "ACTIVATE",
        "SELLER_DEACTIVATED",
        "PLATFORM_DEACTIVATED",
        "FREEZE",
        "DELETED",
    }
)
_CURRENCIES: Final[Mapping[str, str]] = {
    "GB": "GBP",
    "US": "USD",
    "ID": "IDR",
    "MY": "MYR",
    "TH": "THB",
    "VN": "VND",
    "PH": "PHP",
    "SG": "SGD",
    "MX": "MXN",
    "ES": "EUR",
}
#: Creation times of simulated orders and products fall in the year after this (2023-11-14).
_EPOCH: Final = 1_700_000_000


def _number(*parts: str, digits: int = 19) -> int:
    """A stable number of `digits` digits from `parts`: the same order id gives the same order."""
    seed = int.from_bytes(hashlib.sha256(":".join(parts).encode()).digest()[:8])
    low = int(10 ** (digits - 1))
    return low + seed % (9 * low)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _order(shop: Mapping[str, str], order_id: str) -> dict[str, Any]:
    """A plausible order in Get Order Detail's shape, derived from the shop and the order id."""
    currency = _CURRENCIES.get(shop["region"], "USD")
    quantity = 1 + _number(shop["id"], order_id, "quantity") % 3
    unit = 500 + _number(shop["id"], order_id, "price") % 9500
    shipping = 299
    created = _EPOCH + _number(shop["id"], order_id, "time") % 31_536_000
    product_id = str(_number(shop["id"], order_id, "product"))
    sku_id = str(_number(shop["id"], order_id, "sku"))
    # Since 202309 an order has one line item per unit, not a quantity.
    line_items = [
        {
            "id": str(_number(order_id, "line", str(n))),
            "product_id": product_id,
            "product_name": f"Sandbox product {product_id[-4:]}",
            "sku_id": sku_id,
            "seller_sku": f"SKU-{sku_id[-6:]}",
            "sku_name": "Default",
            "sale_price": _money(unit),
            "original_price": _money(unit),
            "currency": currency,
            "display_status": "AWAITING_SHIPMENT",
            "is_gift": False,
        }
        for n in range(quantity)
    ]
    return {
        "id": order_id,
        "status": "AWAITING_SHIPMENT",
        "create_time": created,
        "paid_time": created + 60,
        "update_time": created + 120,
        "user_id": str(_number(order_id, "buyer")),
        "buyer_email": f"buyer-{order_id[-6:]}@scs.tiktokw.us",
        "buyer_message": "",
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "delivery_option_name": "Standard shipping",
        "shipping_type": "TIKTOK",
        "is_cod": False,
        "payment": {
            "currency": currency,
            "sub_total": _money(unit * quantity),
            "shipping_fee": _money(shipping),
            "seller_discount": "0.00",
            "platform_discount": "0.00",
            "tax": "0.00",
            "total_amount": _money(unit * quantity + shipping),
            "original_total_product_price": _money(unit * quantity),
            "original_shipping_fee": _money(shipping),
        },
        "recipient_address": {
            "name": "Sandbox Buyer",
            "phone_number": "(+44)7*******00",
            "full_address": "1 Sandbox Street, Testville",
            "postal_code": "SB1 1AA",
            "region_code": shop["region"],
        },
        "line_items": line_items,
    }


def _product(shop: Mapping[str, str], index: int) -> dict[str, Any]:
    """The shop's `index`-th product in Search Products' shape."""
    product_id = str(_number(shop["id"], "product", str(index)))
    sku_id = str(_number(shop["id"], "sku", str(index)))
    created = _EPOCH + _number(shop["id"], "created", str(index)) % 31_536_000
    price = 500 + _number(product_id, "price") % 9500
    return {
        "id": product_id,
        "title": f"Sandbox product {index + 1}",
        "status": "ACTIVATE",
        "sales_regions": [shop["region"]],
        "create_time": created,
        "update_time": created + 3600,
        "is_not_for_sale": False,
        "skus": [
            {
                "id": sku_id,
                "seller_sku": f"SKU-{index + 1:04d}",
                "price": {
                    "currency": _CURRENCIES.get(shop["region"], "USD"),
                    "tax_exclusive_price": _money(price),
                    "sale_price": _money(price),
                },
                "inventory": [
                    {
                        "warehouse_id": str(_number(shop["id"], "warehouse")),
                        "quantity": _number(sku_id, "stock") % 200,
                    }
                ],
            }
        ],
    }


def _page_token(offset: int) -> str:
    """An opaque page token, as the platform's are: the offset, base64url."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str) -> int | None:
    """Where a page token says to continue; 0 for none, None for one this shop never gave."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    prefix, _, number = text.partition(":")
    if prefix != "offset" or not number.isascii() or not number.isdigit() or len(number) > 9:
        return None
    return int(number)


def _int_in(text: str | None, low: int, high: int) -> int | None:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    value = int(text)
    return value if low <= value <= high else None


async def _json_object(request: Request) -> dict[str, Any]:
    """A POST's JSON body as an object; an empty body is no filter."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise _Refused(36009004, "Invalid request. Content-Type must be application/json.")
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise _Refused(36009004, "Invalid request. The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _Refused(36009004, "Invalid request. The body must be a JSON object.")
    return data


#: The class the sandbox serves for this platform.
SIMULATOR = TikTokShopSimulator
