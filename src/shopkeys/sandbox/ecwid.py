"""The Ecwid simulator: my.ecwid.com's OAuth endpoints and app.ecwid.com's REST API in one.

Endpoint names for fault injection:
- `authorize`: `GET|POST /api/oauth/authorize` (the merchant's consent page);
- `token`: `POST /api/oauth/token/{store_id}` (the store id from the callback). The path without
  the store id is retired, as Ecwid announced on 2025-09-19: it answers 410 Gone;
- `profile`: `GET /api/v3/{store_id}/profile` (any token; `read_store_profile` is always granted);
- `products`: `GET /api/v3/{store_id}/products` (needs `read_catalog`);
- `orders`: `GET /api/v3/{store_id}/orders` (needs `read_orders`);
- `product_file`: `GET /api/v3/{store_id}/products/{product_id}/files/{file_id}` ("Download
  product file", api-docs.ecwid.com/reference/download-product-file: the file's bytes, 403
  without `read_catalog`, 404 when the product or file is not found). Ecwid's ids are numbers;
  the simulator's convention is that a file id IS the file's size in bytes (up to
  `max_file_bytes`), so a test picks the size by the id it asks for. The bytes are streamed in
  64 KiB chunks, never held whole, with `Content-Length`; byte `i` of every file is `i % 251`
  (a prime period, so a lost or repeated chunk shows).

Strict like Ecwid: the redirect URI must be the registered one, the code exchange must be a
form-encoded POST, a code works once and a second exchange disables the token the first one
gave, the REST API takes the token only as `Authorization: Bearer`, and every token may make
`requests_per_minute` calls a minute (by the simulator's clock) before it gets 429 with
`Retry-After`. Tokens never expire unless a test sets `lifetimes.access`.

App Market installs: `GET /_sandbox/app-market` shows the app's App Market page with an
Install button; installing (or `POST /_sandbox/install` with `{"login": ...}`, which answers the
address instead of redirecting) sends the merchant to the redirect URI with `code` and
`store_id` and no `state`, as Ecwid does for an app installed from its App Market.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from shopkeys.sandbox.authorize_page import DEFAULT_LOGIN, error_page, read_decision
from shopkeys.sandbox.core import (
    CodeProblem,
    Lifetimes,
    SimAccount,
    Simulator,
    random_token,
    with_query,
)
from shopkeys.sandbox.signatures import ecwid_webhook_signature

# The header a webhook's signature travels in ("Authenticate webhooks with signature").
SIGNATURE_HEADER: Final = "X-Ecwid-Webhook-Signature"

# Ecwid's access scopes (docs.ecwid.com, "App settings", "List of access scopes").
KNOWN_SCOPES: Final = frozenset(
    {
        "read_store_profile",
        "update_store_profile",
        "read_store_profile_extended",
        "read_store_limits",
        "read_catalog",
        "update_catalog",
        "create_catalog",
        "read_orders",
        "update_orders",
        "create_orders",
        "read_customers",
        "update_customers",
        "create_customers",
        "read_discount_coupons",
        "update_discount_coupons",
        "create_discount_coupons",
        "read_subscriptions",
        "update_subscriptions",
        "public_storefront",
        "customize_storefront",
        "add_to_cp",
        "allow_sso",
        "manage_instant_site",
    }
)
ALWAYS_GRANTED: Final = "read_store_profile"

# REST errors as Ecwid sends them: status and message per code ("REST API error codes").
REST_ERRORS: Final[Mapping[str, tuple[int, str]]] = {
    "WRONG_PARAMETER": (400, "Wrong request parameter."),
    "NOT_AVAILABLE_ON_CURRENT_PLAN": (402, "Feature not available on current plan"),
    "STORE_IS_SUSPENDED": (402, "Store with specified ID is currently suspended."),
    "INSUFFICIENT_APP_SCOPE": (403, "Application doesn't have a required scope for the request."),
    "INVALID_API_TOKEN": (403, "Invalid access token in the request."),
    "STORE_NOT_FOUND": (404, "Store with specified ID was not found."),
    "PROFILE_NOT_FOUND": (404, "User store profile not found."),
    "METHOD_NOT_ALLOWED": (405, "HTTP request type is not supported for the specified endpoint."),
    "TIMEOUT": (408, "Request failed due to timeout."),
    "RATE_LIMITED": (429, "Too many requests, rate limit exceeded."),
    "INTERNAL_ERROR": (500, "Internal error."),
}

# Token endpoint errors (undocumented by Ecwid; RFC 6749 section 5.2 bodies).
OAUTH_ERRORS: Final[Mapping[str, tuple[int, str]]] = {
    "invalid_request": (400, "A required parameter is missing or malformed."),
    "invalid_client": (401, "Bad client credentials."),
    "invalid_grant": (400, "Invalid authorization code."),
    "unsupported_grant_type": (400, "Unsupported grant type."),
    "method_not_allowed": (405, "Request method 'GET' is not supported."),
    "server_error": (500, "Internal server error."),
}

APP_MARKET_PATH: Final = "/_sandbox/app-market"

#: What the App Market install grants: the scopes an app lists on its App Market page.
DEFAULT_INSTALL_SCOPES: Final = ("read_store_profile", "read_catalog", "read_orders")

_REQUIRED_TOKEN_PARAMS: Final = ("client_id", "client_secret", "code", "redirect_uri", "grant_type")

#: Every simulated product file repeats 0, 1, ..., 250: byte `i` is `i % FILE_BYTE_PERIOD`.
FILE_BYTE_PERIOD: Final = 251
_CHUNK: Final = 64 * 1024
# Long enough to cut any chunk from any phase of the period without building bytes per chunk.
_PATTERN: Final = bytes(i % FILE_BYTE_PERIOD for i in range(_CHUNK + FILE_BYTE_PERIOD))


async def file_chunks(size: int) -> AsyncIterator[bytes]:
    """The `size` bytes of a simulated product file, a chunk at a time."""
    sent = 0
    while sent < size:
        count = min(_CHUNK, size - sent)
        phase = sent % FILE_BYTE_PERIOD
        yield _PATTERN[phase : phase + count]
        sent += count


@dataclass(slots=True)
class IssuedToken:
    """An access token the simulator handed out, and what it may do."""

    value: str
    store_id: str
    scopes: tuple[str, ...]
    issued_at: datetime
    public: bool = False
    active: bool = True


@dataclass(slots=True)
class Store:
    """A merchant's store, created the first time its login authorizes the app."""

    account: SimAccount
    store_id: str
    tokens: list[str] = field(default_factory=list)


class EcwidSimulator(Simulator):
    """Ecwid's OAuth server and REST API (profile, products, orders, product file downloads)."""

    name: ClassVar[str] = "ecwid"
    display_name: ClassVar[str] = "Ecwid"
    app_market_path: ClassVar[str | None] = APP_MARKET_PATH
    #: Ecwid's documented limit per access token.
    requests_per_minute: int = 600
    #: The largest product file (file id) the simulator serves; larger ids are not found.
    max_file_bytes: int = 1 << 30

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stores: dict[str, Store] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self._calls: dict[str, deque[datetime]] = {}

    @classmethod
    def default_lifetimes(cls) -> Lifetimes:
        # Codes "live a few minutes" (docs); access tokens never expire; no refresh tokens.
        return Lifetimes(code=300, access=None, refresh=None)

    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/api/oauth/authorize",
                self.endpoint("authorize", self._authorize),
                methods=["GET", "POST"],
            ),
            Route(
                "/api/oauth/token",
                self.endpoint("token", self._retired_token),
                methods=["GET", "POST"],
            ),
            Route(
                "/api/oauth/token/{store_id}",
                self.endpoint("token", self._token),
                methods=["GET", "POST"],
            ),
            Route(
                "/api/v3/{store_id}/profile",
                self.endpoint("profile", self._profile),
                methods=["GET"],
            ),
            Route(
                "/api/v3/{store_id}/products",
                self.endpoint("products", self._products),
                methods=["GET"],
            ),
            Route(
                "/api/v3/{store_id}/orders",
                self.endpoint("orders", self._orders),
                methods=["GET"],
            ),
            Route(
                "/api/v3/{store_id}/products/{product_id}/files/{file_id}",
                self.endpoint("product_file", self._product_file),
                methods=["GET"],
            ),
        ]

    # -- errors -----------------------------------------------------------------------------------

    def platform_error(self, code: str) -> Response:
        """Ecwid's REST error body for an upper-case code, RFC 6749's for a token endpoint code."""
        if code in OAUTH_ERRORS:
            status, message = OAUTH_ERRORS[code]
            return JSONResponse({"error": code, "error_description": message}, status_code=status)
        status, message = REST_ERRORS.get(code, (400, "Request failed."))
        headers = {"Retry-After": "60"} if status == 429 else None
        return JSONResponse(
            {"errorMessage": message, "errorCode": code}, status_code=status, headers=headers
        )

    def _oauth_error(self, code: str, description: str | None = None) -> Response:
        status, message = OAUTH_ERRORS[code]
        return JSONResponse(
            {"error": code, "error_description": description or message}, status_code=status
        )

    def _rest_error(self, code: str, *, retry_after: int | None = None) -> Response:
        status, message = REST_ERRORS[code]
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return JSONResponse(
            {"errorMessage": message, "errorCode": code}, status_code=status, headers=headers
        )

    # -- the consent page -------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        params = request.query_params
        redirect_uri = params.get("redirect_uri", "")
        # Never send a code anywhere but the registered address.
        if redirect_uri != self.app.redirect_uri:
            return error_page(self.display_name, "redirect_uri does not match the app's return URL")
        if params.get("client_id") != self.app.client_id:
            return error_page(self.display_name, "Unknown application (client_id)")
        if params.get("response_type") != "code":
            return error_page(self.display_name, "response_type must be code")
        requested = [s for s in (params.get("scope") or "").split() if s]
        unknown = sorted(set(requested) - KNOWN_SCOPES)
        if unknown:
            return error_page(self.display_name, f"Unknown access scope: {', '.join(unknown)}")
        scopes = tuple(dict.fromkeys([ALWAYS_GRANTED, *requested]))
        state = params.get("state")
        if request.method == "GET":
            return self.consent_page(request, scopes)
        decision = await read_decision(request)
        back: dict[str, str] = {}
        if not decision.approved:
            back["error"] = "access_denied"
        else:
            store = self._store(SimAccount(decision.login))
            code = random_token(nbytes=18)
            self.codes.issue(
                code,
                store.account,
                self.lifetimes.code,
                redirect_uri=redirect_uri,
                scopes=scopes,
                extra={"store_id": store.store_id},
            )
            back["code"] = code
            back["store_id"] = store.store_id
        if state is not None:
            back["state"] = state
        return RedirectResponse(with_query(redirect_uri, back), status_code=302)

    def _store(self, account: SimAccount) -> Store:
        store_id = account.digits(8, salt="ecwid-store")
        store = self.stores.get(store_id)
        if store is None:
            store = self.stores[store_id] = Store(account=account, store_id=store_id)
        return store

    # -- App Market installs ----------------------------------------------------------------------

    def _control_routes(self) -> list[BaseRoute]:
        return [
            *super()._control_routes(),
            Route(APP_MARKET_PATH, self._app_market, methods=["GET", "POST"]),
            Route("/_sandbox/install", self._install_control, methods=["POST"]),
        ]

    def install(self, login: str, scopes: Sequence[str] = DEFAULT_INSTALL_SCOPES) -> str:
        """Install the app for the store of `login`: where Ecwid then sends the merchant."""
        store = self._store(SimAccount(login))
        scopes = tuple(dict.fromkeys([ALWAYS_GRANTED, *scopes]))
        code = random_token(nbytes=18)
        self.codes.issue(
            code,
            store.account,
            self.lifetimes.code,
            redirect_uri=self.app.redirect_uri,
            scopes=scopes,
            extra={"store_id": store.store_id},
        )
        # No state: the merchant never passed through the app's authorization request.
        return with_query(self.app.redirect_uri, {"code": code, "store_id": store.store_id})

    async def _app_market(self, request: Request) -> Response:
        if request.method == "GET":
            return self.consent_page(
                request, DEFAULT_INSTALL_SCOPES, verb="Install", deny_label="Cancel"
            )
        decision = await read_decision(request)
        if not decision.approved:
            return error_page(self.display_name, "The app was not installed.", status_code=200)
        return RedirectResponse(self.install(decision.login), status_code=302)

    async def _install_control(self, request: Request) -> Response:
        try:
            data = await request.json()
        except ValueError:
            data = None
        login = data.get("login", DEFAULT_LOGIN) if isinstance(data, dict) else None
        scopes = data.get("scopes", DEFAULT_INSTALL_SCOPES) if isinstance(data, dict) else None
        if not isinstance(login, str) or not login.strip():
            return JSONResponse({"error": 'send {"login": "..."} (a store login)'}, 400)
        if not isinstance(scopes, list | tuple) or not all(isinstance(x, str) for x in scopes):
            return JSONResponse({"error": "scopes must be a list of scope names"}, 400)
        unknown = sorted(set(scopes) - KNOWN_SCOPES)
        if unknown:
            return JSONResponse({"error": f"unknown scopes: {', '.join(unknown)}"}, 400)
        location = self.install(login.strip(), scopes)
        store_id = SimAccount(login.strip()).digits(8, salt="ecwid-store")
        return JSONResponse({"location": location, "store_id": store_id})

    # -- the code exchange ------------------------------------------------------------------------

    async def _retired_token(self, request: Request) -> Response:
        return JSONResponse(
            {
                "error": "invalid_request",
                "error_description": "This endpoint was retired: exchange the code at "
                "/api/oauth/token/{store_id}, with the store_id the callback carried.",
            },
            status_code=410,
        )

    async def _token(self, request: Request) -> Response:
        if request.method != "POST":
            return self._oauth_error("method_not_allowed")
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return self._oauth_error(
                "invalid_request", "Send the parameters as a form-encoded request body."
            )
        # Only the body counts: the query string is where the old, refused GET put them.
        form = await request.form()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        missing = [p for p in _REQUIRED_TOKEN_PARAMS if not params.get(p)]
        if missing:
            return self._oauth_error("invalid_request", f"Missing parameter: {missing[0]}")
        if (
            params["client_id"] != self.app.client_id
            or params["client_secret"] != self.app.client_secret
        ):
            return self._oauth_error("invalid_client")
        if params["grant_type"] != "authorization_code":
            return self._oauth_error("unsupported_grant_type")
        issued = self.codes.peek(params["code"])
        try:
            code = self.codes.redeem(params["code"])
        except CodeProblem as problem:
            if problem.reason == "used" and issued is not None:
                # Ecwid: "In case of second attempt, the previously provided access token is
                # automatically disabled."
                first = self.tokens.get(issued.extra.get("token", ""))
                if first is not None:
                    first.active = False
            return self._oauth_error("invalid_grant", f"Authorization code is {problem.reason}.")
        store_id = str(code.extra["store_id"])
        if params["redirect_uri"] != code.redirect_uri:
            return self._oauth_error("invalid_grant", "redirect_uri does not match.")
        path_store = request.path_params["store_id"]
        if path_store != store_id:
            return self._oauth_error("invalid_grant", "The code was issued for another store.")
        token = self._issue(store_id, code.scopes)
        code.extra["token"] = token.value
        body: dict[str, Any] = {
            "access_token": token.value,
            # The docs show "bearer"; Ecwid's own WordPress plugin requires "Bearer".
            "token_type": "Bearer",
            "scope": " ".join(code.scopes),
            "store_id": int(store_id),
        }
        if "public_storefront" in code.scopes:
            body["public_token"] = self._issue(store_id, code.scopes, public=True).value
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def _issue(
        self, store_id: str, scopes: tuple[str, ...], *, public: bool = False
    ) -> IssuedToken:
        prefix = "public_" if public else "secret_"
        token = IssuedToken(
            value=prefix + random_token(nbytes=24).replace("-", "").replace("_", ""),
            store_id=store_id,
            scopes=scopes,
            issued_at=self.clock(),
            public=public,
        )
        self.tokens[token.value] = token
        self.stores[store_id].tokens.append(token.value)
        return token

    def uninstall(self, store_id: str) -> None:
        """The merchant removes the app: every token of that store stops working."""
        store = self.stores.get(store_id)
        for value in store.tokens if store else []:
            self.tokens[value].active = False

    # -- the REST API -----------------------------------------------------------------------------

    def _authenticate(self, request: Request, scope: str | None) -> IssuedToken | Response:
        """The caller's token, or the error Ecwid answers instead."""
        store_id = request.path_params["store_id"]
        if store_id not in self.stores:
            return self._rest_error("STORE_NOT_FOUND")
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            # Since 2025-03-20 a `?token=` query parameter is ignored, as if absent.
            return self._rest_error("INVALID_API_TOKEN")
        token = self.tokens.get(value.strip())
        if token is None or not token.active or token.store_id != store_id or self._expired(token):
            return self._rest_error("INVALID_API_TOKEN")
        wait = self._count_call(token.value)
        if wait is not None:
            return self._rest_error("RATE_LIMITED", retry_after=wait)
        if scope is not None and (token.public or scope not in token.scopes):
            return self._rest_error("INSUFFICIENT_APP_SCOPE")
        return token

    def _expired(self, token: IssuedToken) -> bool:
        lifetime = self.lifetimes.access
        if lifetime is None:
            return False
        return self.clock() >= token.issued_at + timedelta(seconds=lifetime)

    def _count_call(self, token: str) -> int | None:
        """Record a call; when over the limit, the seconds to wait instead (sliding minute)."""
        now = self.clock()
        window = self._calls.setdefault(token, deque())
        while window and now - window[0] >= timedelta(minutes=1):
            window.popleft()
        if len(window) >= self.requests_per_minute:
            left = (window[0] + timedelta(minutes=1) - now).total_seconds()
            return max(1, math.ceil(left))
        window.append(now)
        return None

    async def _profile(self, request: Request) -> Response:
        token = self._authenticate(request, None)
        if isinstance(token, Response):
            return token
        store = self.stores[token.store_id]
        account = store.account
        general = {
            "storeId": int(store.store_id),
            "storeUrl": f"https://store{store.store_id}.company.site",
            "websitePlatform": "instantsite",
            "starterSite": {
                "ecwidSubdomain": account.login,
                "generatedUrl": f"https://store{store.store_id}.company.site",
            },
        }
        settings = {"closed": False, "storeName": account.display_name}
        if token.public:
            # A public token sees only highly limited store profile data.
            return JSONResponse({"generalInfo": general, "settings": settings})
        return JSONResponse(
            {
                "generalInfo": general,
                "account": {
                    "accountName": f"{account.display_name} Owner",
                    "accountNickName": account.login,
                    "accountEmail": account.email,
                    "whiteLabel": False,
                    "suspended": False,
                },
                "settings": settings,
            }
        )

    async def _products(self, request: Request) -> Response:
        return await self._empty_list(request, "read_catalog")

    async def _orders(self, request: Request) -> Response:
        return await self._empty_list(request, "read_orders")

    async def _empty_list(self, request: Request, scope: str) -> Response:
        token = self._authenticate(request, scope)
        if isinstance(token, Response):
            return token
        return JSONResponse({"total": 0, "count": 0, "offset": 0, "limit": 100, "items": []})

    async def _product_file(self, request: Request) -> Response:
        """Download product file: the bytes of the file whose id is its size (see the module)."""
        token = self._authenticate(request, "read_catalog")
        if isinstance(token, Response):
            return token
        product_id = request.path_params["product_id"]
        file_id = request.path_params["file_id"]
        size = _whole(file_id)
        if _whole(product_id) is None or size is None or size > self.max_file_bytes:
            # Ecwid documents only the status and an `errorMessage` for this one.
            return JSONResponse({"errorMessage": "Product or file is not found"}, status_code=404)
        headers = {
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="file-{file_id}.bin"',
        }
        return StreamingResponse(
            file_chunks(size), media_type="application/octet-stream", headers=headers
        )

    # -- webhooks ---------------------------------------------------------------------------------

    def webhook(self, payload: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
        """An Ecwid webhook: the event fields Ecwid fills in, signed over created.id."""
        event: dict[str, Any] = {
            "eventId": str(uuid.uuid4()),
            "eventCreated": int(self.clock().timestamp()),
            "storeId": int(next(iter(self.stores), "1003")),
            "entityId": 0,
            "eventType": "order.updated",
            "data": {},
            **payload,
        }
        body = json.dumps(event).encode()
        sig = ecwid_webhook_signature(
            self.app.client_secret, event["eventCreated"], str(event["eventId"])
        )
        return {"Content-Type": "application/json", SIGNATURE_HEADER: sig}, body


def _whole(text: str) -> int | None:
    """A path id as Ecwid's are, a plain decimal number; None for anything else."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


#: The class the sandbox serves for this platform.
SIMULATOR = EcwidSimulator
