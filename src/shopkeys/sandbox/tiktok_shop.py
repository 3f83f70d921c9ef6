"""A strict simulator of TikTok Shop's authorization, token and authorized-shops endpoints."""

from __future__ import annotations

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
    """Stops a handler with the platform's error answer for `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class TikTokShopSimulator(Simulator):
    """TikTok Shop, folded onto one host.

    Endpoint names for fault injection: "authorize" (both authorization pages), "token"
    (`/api/v2/token/get`), "refresh" (`/api/v2/token/refresh`), "shops"
    (`/authorization/202309/shops`).
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
        ]

    def platform_error(self, code: str) -> Response:
        try:
            number = int(code)
        except ValueError:
            number = 36009003
        body = {
            "code": number,
            "message": MESSAGES.get(number, "Unknown error."),
            "request_id": self._request_id(),
            "data": None,
        }
        return JSONResponse(body, status_code=_STATUS.get(number, 200))

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

    async def _shops(self, request: Request) -> Response:
        try:
            issued = await self._check_api_call(request)
        except _Refused as refused:
            return self.platform_error(str(refused.code))
        data = {"shops": issued.authorization.shops()}
        return JSONResponse(
            {"code": 0, "message": "success", "request_id": self._request_id(), "data": data}
        )

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


#: The class the sandbox serves for this platform.
SIMULATOR = TikTokShopSimulator
