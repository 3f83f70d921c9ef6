"""SHOPLINE (shoplineapp.com) simulated: a Doorkeeper OAuth 2.0 server, strict as the real one.

Paths (developers.shoplineapp.com and open.shopline.io folded into one):
- `GET|POST /oauth/authorize` (endpoint "authorize"), `POST /oauth/token` ("token" for codes,
  "refresh" for refresh tokens), `GET /oauth/token/info` ("token_info"), `POST /oauth/revoke`
  ("revoke");
- the Open API's `GET /v1/token/info` ("api"), which like every Open API call refuses a request
  without a `User-Agent` header.

A refresh may carry `redirect_uri` (the platform's docs list it); when it does, it must be the
registered one.

Webhooks (`signed_webhook`, `POST /_sandbox/webhooks`) go out as SHOPLINE sends them: the body
compact and unsorted, the signature in the URL's `sign` over the timestamp header and the sorted
body. An `application/uninstall` also revokes every token of that merchant.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from shopkeys.sandbox.authorize_page import error_page, read_decision
from shopkeys.sandbox.core import (
    CodeProblem,
    Lifetimes,
    SignedWebhook,
    SimAccount,
    SimulatedApp,
    Simulator,
    read_params,
    with_query,
)
from shopkeys.sandbox.signatures import shopline_webhook_signature

#: Doorkeeper's own wording for each RFC 6749 error, and its HTTP status.
OAUTH_ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (
        400,
        "The request is missing a required parameter, includes an unsupported parameter "
        "value, or is otherwise malformed.",
    ),
    "invalid_client": (
        401,
        "Client authentication failed due to unknown client, no client authentication "
        "included, or unsupported authentication method.",
    ),
    "invalid_grant": (
        400,
        "The provided authorization grant is invalid, expired, revoked, does not match the "
        "redirection URI used in the authorization request, or was issued to another client.",
    ),
    "unauthorized_client": (403, "You are not authorized to revoke this token"),
    "unsupported_grant_type": (
        400,
        "The authorization grant type is not supported by the authorization server.",
    ),
    "invalid_scope": (400, "The requested scope is invalid, unknown, or malformed."),
    "access_denied": (400, "The resource owner or authorization server denied the request."),
    "unsupported_response_type": (
        400,
        "The authorization server does not support this response type.",
    ),
    "server_error": (
        500,
        "The authorization server encountered an unexpected condition which prevented it "
        "from fulfilling the request.",
    ),
    "temporarily_unavailable": (
        503,
        "The authorization server is currently unable to handle the request due to a "
        "temporary overloading or maintenance of the authorization server.",
    ),
}

#: The token info endpoint's documented 401 codes, plus Doorkeeper's answer for unknown tokens.
TOKEN_INFO_ERRORS: dict[str, str] = {
    "MISSING_TOKEN_ERROR": "Token is required in the header",
    "TOKEN_EXPIRED": "Token is expired, you may need to get a new by refresh token",
    "TOKEN_REVOKED": "Token is revoked, you may need to get a new one by authorization",
    "invalid_token": "The access token is invalid",
}

# SHOPLINE scope names are lowercase resource names (`products`, `order_items`, `openid`).
_SCOPE = re.compile(r"^[a-z][a-z_]*$")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
ISSUER = "https://developers.shoplineapp.com"
ONE_DAY = 86_400
#: expires_in in the docs' token response: about 182.6 days.
ACCESS_LIFETIME = 15_778_476
#: The header holding the time a webhook's signature covers (unix seconds, as in the docs).
TIMESTAMP_HEADER: Final = "X-Shopline-Developer-Event-Timestamp"
#: The topic of an uninstall, which ends every authorization of the merchant.
UNINSTALL: Final = "application/uninstall"


@dataclass(slots=True)
class IssuedToken:
    """One Doorkeeper access token row: an access token paired with its refresh token."""

    access_token: str
    refresh_token: str
    account: SimAccount
    scopes: tuple[str, ...]
    client_id: str
    created_at: int
    expires_in: int | None
    refresh_expires_at: float | None
    revoked: bool = False


class ShoplineSimulator(Simulator):
    """SHOPLINE's Developer Center OAuth server.

    Endpoint names for faults: `authorize` (the page), `token` (authorization_code grant),
    `refresh` (refresh_token grant), `token_info` (`GET /oauth/token/info`), `revoke`.
    """

    name: ClassVar[str] = "shopline"
    display_name: ClassVar[str] = "SHOPLINE"

    def __init__(self, app: SimulatedApp, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.tokens: dict[str, IssuedToken] = {}
        self.refresh_tokens: dict[str, IssuedToken] = {}
        self._jwt_key = secrets.token_bytes(32)
        self._exchange_guarded = self.endpoint("token", self._exchange)
        self._refresh_guarded = self.endpoint("refresh", self._refresh)

    @classmethod
    def default_lifetimes(cls) -> Lifetimes:
        # The refresh token dies one day after its access token expires.
        return Lifetimes(code=600, access=ACCESS_LIFETIME, refresh=ACCESS_LIFETIME + ONE_DAY)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/oauth/authorize",
                self.endpoint("authorize", self._authorize),
                methods=["GET", "POST"],
            ),
            Route("/oauth/token", self._token, methods=["POST"]),
            Route(
                "/oauth/token/info", self.endpoint("token_info", self._token_info), methods=["GET"]
            ),
            Route("/oauth/revoke", self.endpoint("revoke", self._revoke), methods=["POST"]),
            Route("/v1/token/info", self.endpoint("api", self._api_token_info), methods=["GET"]),
        ]

    def platform_error(self, code: str) -> Response:
        if code in TOKEN_INFO_ERRORS:
            return _token_info_error(code)
        return _oauth_error(code)

    # -- webhooks -------------------------------------------------------------------------------

    def webhook(self, payload: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
        raise NotImplementedError("SHOPLINE signs in the URL: use signed_webhook")

    def signed_webhook(self, payload: Mapping[str, Any]) -> SignedWebhook:
        """A webhook with the envelope of the docs' examples (`trace_id`, `ts` in nanoseconds,
        `event`, `topic`, `merchant_id`, `resource`), `payload` on top; an uninstall revokes
        that merchant's tokens first, as the platform does."""
        now = self.clock()
        topic = str(payload.get("topic", "order/create"))
        event: dict[str, Any] = {
            # SHOPLINE's id of the event: a retried delivery carries the same one.
            "trace_id": str(uuid.uuid4()),
            "ts": str(int(now.timestamp() * 1_000_000) * 1000),
            "event": topic.partition("/")[0].replace("_", " ").title().replace(" ", ""),
            "topic": topic,
            "merchant_id": self._latest_merchant(),
            "resource": {},
            **payload,
        }
        if topic == UNINSTALL:
            self.uninstall(str(event["merchant_id"]))
        timestamp = str(int(now.timestamp()))
        # Sent as Node sends it: compact, keys in the order written, non-ASCII as it is.
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        sign = shopline_webhook_signature(self.app.client_secret, timestamp, event)
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp}
        return SignedWebhook(headers, body, {"sign": sign})

    def uninstall(self, merchant: str) -> int:
        """Revoke every live token of the app for `merchant`; how many there were."""
        hits = [
            t
            for t in self.tokens.values()
            if not t.revoked
            and t.client_id == self.app.client_id
            and merchant_id(t.account) == merchant
        ]
        for token in hits:
            token.revoked = True
        return len(hits)

    def _latest_merchant(self) -> str:
        """The merchant of the last token issued (a webhook needs one; tests name theirs)."""
        latest = next(reversed(self.tokens.values()), None)
        return merchant_id(latest.account) if latest else merchant_id(SimAccount("demo-store"))

    # -- authorization page ---------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        query = request.query_params
        if query.get("client_id") != self.app.client_id:
            return error_page(self.display_name, OAUTH_ERRORS["invalid_client"][1], 401)
        redirect_uri = query.get("redirect_uri")
        if redirect_uri != self.app.redirect_uri:
            # Never send anything to an address the app did not register (query strings included).
            return error_page(
                self.display_name,
                "The requested redirect uri is malformed or doesn't match client redirect URI.",
            )
        state = query.get("state")
        if query.get("response_type") != "code":
            return _redirect_error(redirect_uri, "unsupported_response_type", state)
        scopes = (query.get("scope") or "").split()
        if not scopes or not all(_SCOPE.match(s) for s in scopes):
            return _redirect_error(redirect_uri, "invalid_scope", state)
        if request.method == "GET":
            return self.consent_page(request, scopes)
        decision = await read_decision(request)
        if not decision.approved:
            return _redirect_error(redirect_uri, "access_denied", state)
        code = secrets.token_hex(32)
        self.codes.issue(
            code,
            SimAccount(decision.login),
            self.lifetimes.code,
            redirect_uri=redirect_uri,
            scopes=tuple(scopes),
            extra={"client_id": self.app.client_id},
        )
        params = {"code": code} | ({"state": state} if state else {})
        return RedirectResponse(with_query(redirect_uri, params), status_code=302)

    # -- token endpoint -------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        """One path, two fault endpoints: `token` and `refresh`, chosen by grant type."""
        params = await read_params(request)
        request.state.params = params
        if params.get("grant_type") == "refresh_token":
            return await self._refresh_guarded(request)
        return await self._exchange_guarded(request)

    async def _exchange(self, request: Request) -> Response:
        params: dict[str, str] = request.state.params
        grant_type = params.get("grant_type")
        if not grant_type:
            return _oauth_error("invalid_request", "Missing required parameter: grant_type.")
        if grant_type != "authorization_code":
            return _oauth_error("unsupported_grant_type")
        for name in ("code", "redirect_uri"):
            if not params.get(name):
                return _oauth_error("invalid_request", f"Missing required parameter: {name}.")
        if not self._client_authenticated(request, params):
            return _oauth_error("invalid_client")
        code = self.codes.peek(params["code"])
        # A code for another client or another redirect URI is refused without being used up.
        if (
            code is None
            or code.extra.get("client_id") != self.app.client_id
            or code.redirect_uri != params["redirect_uri"]
        ):
            return _oauth_error("invalid_grant")
        try:
            self.codes.redeem(code.value)
        except CodeProblem:
            return _oauth_error("invalid_grant")
        return self._token_response(self._issue(code.account, code.scopes))

    async def _refresh(self, request: Request) -> Response:
        params: dict[str, str] = request.state.params
        if not params.get("refresh_token"):
            return _oauth_error("invalid_request", "Missing required parameter: refresh_token.")
        if not self._client_authenticated(request, params):
            return _oauth_error("invalid_client")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is not None and redirect_uri != self.app.redirect_uri:
            return _oauth_error(
                "invalid_grant",
                "The redirect uri included is not valid: it does not match the redirection URI "
                "used in the authorization request.",
            )
        old = self.refresh_tokens.get(params["refresh_token"])
        if (
            old is None
            or old.revoked
            or old.client_id != self.app.client_id
            or self._refresh_expired(old)
        ):
            return _oauth_error("invalid_grant")
        # Doorkeeper rotates: the old row (access and refresh token) is revoked once used.
        old.revoked = True
        return self._token_response(self._issue(old.account, old.scopes))

    def _client_authenticated(self, request: Request, params: dict[str, str]) -> bool:
        """HTTP Basic first (client_secret_basic), else the parameters (client_secret_post)."""
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            client_id, _, secret = decoded.partition(":")
            # RFC 6749 2.3.1: both halves are form-encoded before joining.
            client_id, secret = unquote(client_id), unquote(secret)
        else:
            client_id = params.get("client_id", "")
            secret = params.get("client_secret", "")
        return hmac.compare_digest(client_id.encode(), self.app.client_id.encode()) and (
            hmac.compare_digest(secret.encode(), self.app.client_secret.encode())
        )

    def _issue(self, account: SimAccount, scopes: tuple[str, ...]) -> IssuedToken:
        created = int(self.clock().timestamp())
        access = self.lifetimes.access
        refresh = self.lifetimes.refresh
        token = IssuedToken(
            access_token=self._jwt(account),
            refresh_token=secrets.token_hex(32),
            account=account,
            scopes=scopes,
            client_id=self.app.client_id,
            created_at=created,
            expires_in=None if access is None else round(access),
            refresh_expires_at=None if refresh is None else created + refresh,
        )
        self.tokens[token.access_token] = token
        self.refresh_tokens[token.refresh_token] = token
        return token

    def _token_response(self, token: IssuedToken) -> Response:
        body: dict[str, Any] = {
            "access_token": token.access_token,
            "token_type": "Bearer",
            "expires_in": token.expires_in,
            "refresh_token": token.refresh_token,
            "scope": " ".join(token.scopes),
            "created_at": token.created_at,
            "resource_owner_id": merchant_id(token.account),
        }
        if token.expires_in is None:
            del body["expires_in"]  # Doorkeeper drops blank fields
        return JSONResponse(body, headers=_NO_STORE)

    def _jwt(self, account: SimAccount) -> str:
        """A JWT-shaped access token like SHOPLINE's (HS256 over merchant and application)."""
        owner = merchant_id(account)
        header = _b64url(json.dumps({"alg": "HS256"}).encode())
        claims = {
            "jti": secrets.token_hex(16),
            "data": {"merchant_id": owner, "application_id": self.app.client_id},
            "iss": ISSUER,
            "aud": [],
            "sub": owner,
        }
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode()
        signature = hmac.new(self._jwt_key, signing_input, hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64url(signature)}"

    def _now(self) -> float:
        return self.clock().timestamp()

    def _access_expired(self, token: IssuedToken) -> bool:
        return token.expires_in is not None and self._now() >= token.created_at + token.expires_in

    def _refresh_expired(self, token: IssuedToken) -> bool:
        return token.refresh_expires_at is not None and self._now() >= token.refresh_expires_at

    # -- token info and revoke ------------------------------------------------------------------

    async def _token_info(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        value = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not value:
            return _token_info_error("MISSING_TOKEN_ERROR")
        token = self.tokens.get(value)
        if token is None:
            return _token_info_error("invalid_token")
        if token.revoked:
            return _token_info_error("TOKEN_REVOKED")
        if self._access_expired(token):
            return _token_info_error("TOKEN_EXPIRED")
        account = token.account
        owner = merchant_id(account)
        left = None
        if token.expires_in is not None:
            left = max(0, int(token.created_at + token.expires_in - self._now()))
        return JSONResponse(
            {
                "resource_owner_id": owner,
                "scope": list(token.scopes),
                "expires_in": left,
                "application": {"uid": token.client_id},
                "created_at": token.created_at,
                "staff": {
                    "_id": account.hex(24, "staff"),
                    "email": account.email,
                    "locale_code": "en",
                    "merchant_ids": [owner],
                    "name": account.display_name,
                },
                "merchant": {
                    "_id": owner,
                    "email": account.email,
                    "handle": merchant_handle(account),
                    "name": account.display_name,
                },
            }
        )

    async def _api_token_info(self, request: Request) -> Response:
        """The Open API's view of the token: the same answer, but a User-Agent is required."""
        if not request.headers.get("user-agent", "").strip():
            return JSONResponse(
                {"code": "MISSING_USER_AGENT", "message": "User-Agent header is required"},
                status_code=400,
            )
        return await self._token_info(request)

    async def _revoke(self, request: Request) -> Response:
        params = await read_params(request)
        # Doorkeeper refuses a revocation from an unauthenticated or foreign client.
        if not self._client_authenticated(request, params):
            return _oauth_error("unauthorized_client")
        value = params.get("token", "")
        token = self.tokens.get(value) or self.refresh_tokens.get(value)
        if token is not None and token.client_id == self.app.client_id:
            # One row holds both tokens: revoking either ends the pair (uninstall semantics).
            token.revoked = True
        # RFC 7009: an unknown or already revoked token is answered like a success.
        return JSONResponse({})


def merchant_id(account: SimAccount) -> str:
    """A stable Mongo-style ObjectId (24 hex characters) for the merchant."""
    return account.hex(24, "shopline-merchant")


def merchant_handle(account: SimAccount) -> str:
    return re.sub(r"[^a-z0-9]", "", account.login.lower()) or "store"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _oauth_error(code: str, description: str | None = None) -> JSONResponse:
    status, default = OAUTH_ERRORS.get(code, (400, code))
    return JSONResponse(
        {"error": code, "error_description": description or default},
        status_code=status,
        headers=_NO_STORE,
    )


def _token_info_error(code: str) -> JSONResponse:
    description = TOKEN_INFO_ERRORS[code]
    challenge = (
        f'Bearer realm="Doorkeeper", error="invalid_token", error_description="{description}"'
    )
    return JSONResponse(
        {"error": code, "error_description": description},
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )


def _redirect_error(redirect_uri: str, code: str, state: str | None) -> RedirectResponse:
    params = {"error": code, "error_description": OAUTH_ERRORS[code][1]}
    if state:
        params["state"] = state
    return RedirectResponse(with_query(redirect_uri, params), status_code=302)


#: The class the sandbox serves for this platform.
SIMULATOR = ShoplineSimulator
