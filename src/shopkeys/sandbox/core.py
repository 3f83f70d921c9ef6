"""What every platform simulator shares: its app, clock, codes, fault injection and control routes.

A simulator is strict where its platform is strict. Its state lives in memory, so a restart forgets
every code and token, as a real platform would after an app is reinstalled.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from random import Random
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from shopkeys.clock import Clock, utc_now
from shopkeys.sandbox import authorize_page

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class SimulatedApp:
    """The app registered on the simulated platform: the credentials and redirect URI it accepts."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    service_id: str | None = None


@dataclass(slots=True)
class Lifetimes:
    """How long the simulator's codes and tokens live, in seconds; None means they never expire."""

    code: float
    access: float | None
    refresh: float | None


@dataclass(frozen=True, slots=True)
class SignedWebhook:
    """One webhook delivery: headers, body, and the query added to the receiver's URL."""

    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)

    def url(self, base: str) -> str:
        """`base` with this delivery's query added (the platform's signature, for SHOPLINE)."""
        return with_query(base, self.query) if self.query else base


class SandboxClock:
    """The simulator's own time: the real clock plus an offset that tests move forward."""

    def __init__(self, base: Clock = utc_now) -> None:
        self._base = base
        self._offset = timedelta(0)

    def __call__(self) -> datetime:
        return self._base() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the simulated time forward (or back, with a negative value)."""
        self._offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        self._offset = timedelta(0)


@dataclass(slots=True)
class Fault:
    """A misbehaviour to inject on one endpoint.

    The first that applies wins: `drop` cuts the connection mid-response, `malformed` answers 200
    with an HTML body, `platform_error` answers with the platform's own error body for that code,
    `status` answers with that HTTP status (429 carries `retry_after`). `latency` delays any of
    them, or the real answer when nothing else is set, and `jitter` adds up to that many seconds
    more, drawn anew for each request. `rate` is the chance it fires, `times` how many more times
    it may fire before it removes itself (None: until cleared).
    """

    latency: float = 0.0
    jitter: float = 0.0
    status: int | None = None
    retry_after: float | None = None
    malformed: bool = False
    drop: bool = False
    platform_error: str | None = None
    rate: float = 1.0
    times: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        return cls(**known)


class Faults:
    """The faults set per endpoint name; deterministic for a given seed."""

    def __init__(self, seed: int = 0) -> None:
        self._faults: dict[str, Fault] = {}
        self._seed = seed
        self._random = Random(seed)

    def set(self, endpoint: str, fault: Fault) -> None:
        self._faults[endpoint] = fault

    def clear(self, endpoint: str | None = None) -> None:
        if endpoint is None:
            self._faults.clear()
            self._random = Random(self._seed)
        else:
            self._faults.pop(endpoint, None)

    def active(self) -> dict[str, Fault]:
        return dict(self._faults)

    def delay(self, fault: Fault) -> float:
        """How long to hold this request for `fault`: its latency plus a draw of its jitter."""
        if not fault.jitter:
            return fault.latency
        return fault.latency + self._random.random() * fault.jitter

    def take(self, endpoint: str) -> Fault | None:
        """The fault to apply to this request to `endpoint`, if one fires."""
        fault = self._faults.get(endpoint)
        if fault is None:
            return None
        if fault.rate < 1.0 and self._random.random() >= fault.rate:
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del self._faults[endpoint]
        return fault


class DroppedConnection(Response):
    """Starts a response and then fails, so the server closes the connection mid-message."""

    def __init__(self) -> None:
        super().__init__(status_code=200, headers={"content-length": "4096"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        raise ConnectionAbortedError("sandbox fault: connection dropped")


MALFORMED_BODY = "<html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass(slots=True)
class IssuedCode:
    """An authorization code the simulator handed out."""

    value: str
    account: SimAccount
    expires_at: datetime
    redirect_uri: str | None = None
    scopes: tuple[str, ...] = ()
    used: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class CodeProblem(Exception):
    """Why a code cannot be redeemed: unknown, expired or already used."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CodeBook:
    """Authorization codes: expiring, single use."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._codes: dict[str, IssuedCode] = {}

    def issue(self, value: str, account: SimAccount, lifetime: float, **details: Any) -> IssuedCode:
        code = IssuedCode(
            value=value,
            account=account,
            expires_at=self._clock() + timedelta(seconds=lifetime),
            **details,
        )
        self._codes[value] = code
        return code

    def redeem(self, value: str) -> IssuedCode:
        """Mark the code used and return it; `CodeProblem` says why that is impossible."""
        code = self._codes.get(value)
        if code is None:
            raise CodeProblem("unknown")
        if code.used:
            raise CodeProblem("used")
        if self._clock() >= code.expires_at:
            raise CodeProblem("expired")
        code.used = True
        return code

    def peek(self, value: str) -> IssuedCode | None:
        return self._codes.get(value)


@dataclass(frozen=True, slots=True)
class SimAccount:
    """A merchant on the simulated platform, derived from the login typed on the authorize page.

    The same login always gives the same ids, so reconnecting a store finds the same account.
    """

    login: str

    def digits(self, count: int, salt: str = "") -> str:
        """A stable decimal id of `count` digits, not starting with 0."""
        number = int.from_bytes(hashlib.sha256(f"{salt}:{self.login}".encode()).digest()[:8])
        return str(10 ** (count - 1) + number % (9 * 10 ** (count - 1)))

    def hex(self, count: int, salt: str = "") -> str:
        """A stable lowercase hex id of `count` characters."""
        return hashlib.sha256(f"{salt}:{self.login}".encode()).hexdigest()[:count]

    @property
    def display_name(self) -> str:
        return self.login.replace("-", " ").replace("_", " ").title()

    @property
    def email(self) -> str:
        return f"{self.login}@sandbox.shopkeys.test"


def random_token(prefix: str = "", nbytes: int = 24) -> str:
    """A fresh random credential, URL-safe."""
    return prefix + secrets.token_urlsafe(nbytes)


def with_query(uri: str, params: Mapping[str, str]) -> str:
    """`uri` with `params` added to its query string."""
    parts = urlsplit(uri)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def read_params(request: Request) -> dict[str, str]:
    """Query parameters merged with a form or JSON body's fields (body wins), as strings."""
    params: dict[str, str] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            params.update({k: _as_text(v) for k, v in data.items() if v is not None})
    elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


class Simulator(ABC):
    """One platform's simulator; `asgi()` gives the app that serves its paths."""

    name: ClassVar[str]
    display_name: ClassVar[str]
    #: The simulated app market's page (under the simulator's mount), where the platform has
    #: one that sends installs straight to the app; None elsewhere.
    app_market_path: ClassVar[str | None] = None

    def __init__(
        self,
        app: SimulatedApp,
        *,
        lifetimes: Lifetimes | None = None,
        clock: SandboxClock | None = None,
        seed: int = 0,
    ) -> None:
        self.app = app
        self.lifetimes = lifetimes or self.default_lifetimes()
        self._configured_lifetimes = replace(self.lifetimes)
        self.clock = clock or SandboxClock()
        self.faults = Faults(seed)
        self.codes = CodeBook(self.clock)
        #: Requests received per endpoint name (faults included), shown by `GET /_sandbox`.
        self.calls: Counter[str] = Counter()

    @classmethod
    @abstractmethod
    def default_lifetimes(cls) -> Lifetimes:
        """The platform's real lifetimes for codes and tokens."""

    @abstractmethod
    def routes(self) -> list[BaseRoute]:
        """The platform's own paths, each wrapped with `self.endpoint` for fault injection."""

    @abstractmethod
    def platform_error(self, code: str) -> Response:
        """The platform's exact error answer for one of its error codes (for fault injection)."""

    def consent_page(
        self,
        request: Request,
        scopes: Sequence[str] = (),
        *,
        verb: str = "Authorize",
        deny_label: str = "Deny",
    ) -> Response:
        """The platform's authorization page, asking on behalf of the simulated app."""
        return authorize_page.render(
            request,
            platform=self.display_name,
            app_name=f"app {self.app.client_id}",
            scopes=scopes,
            verb=verb,
            deny_label=deny_label,
        )

    def webhook(self, payload: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
        """Headers and body of a webhook as the platform signs it; override where it signs."""
        raise NotImplementedError(f"{self.display_name} does not send signed webhooks")

    def signed_webhook(self, payload: Mapping[str, Any]) -> SignedWebhook:
        """A webhook as the platform sends it, with the query its URL carries; override where
        the signature travels in the URL (SHOPLINE), else it is `webhook` with no query."""
        headers, body = self.webhook(payload)
        return SignedWebhook(headers, body)

    async def send_webhook(
        self, http: httpx2.AsyncClient, url: str, payload: Mapping[str, Any]
    ) -> httpx2.Response:
        """POST a signed webhook to `url`, as the platform would."""
        webhook = self.signed_webhook(payload)
        return await http.post(webhook.url(url), content=webhook.body, headers=webhook.headers)

    def issue_grants(self, logins: Sequence[str]) -> list[dict[str, Any]]:
        """Authorize the app for each of `logins` at once, as if each merchant had consented and
        the code had been exchanged: the platform's token answers, for seeding many connections
        (`POST /_sandbox/grants`). Simulators that support it override this."""
        raise NotImplementedError(f"the {self.display_name} simulator cannot issue grants in bulk")

    def reset(self) -> None:
        """Forget faults, restore lifetimes, move the clock back to real time (tokens stay)."""
        self.faults.clear()
        self.clock.reset()
        self.lifetimes = replace(self._configured_lifetimes)

    def endpoint(self, name: str, handler: Handler) -> Handler:
        """Wrap `handler` so faults set for `name` apply to it."""

        async def guarded(request: Request) -> Response:
            self.calls[name] += 1
            fault = self.faults.take(name)
            if fault is None:
                return await handler(request)
            delay = self.faults.delay(fault)
            if delay:
                await asyncio.sleep(delay)
            if fault.drop:
                return DroppedConnection()
            if fault.malformed:
                return Response(MALFORMED_BODY, status_code=200, media_type="text/html")
            if fault.platform_error:
                return self.platform_error(fault.platform_error)
            if fault.status is not None:
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(int(fault.retry_after))
                return Response(
                    MALFORMED_BODY if fault.status >= 500 else "",
                    status_code=fault.status,
                    headers=headers,
                    media_type="text/html",
                )
            return await handler(request)

        return guarded

    def asgi(self) -> Starlette:
        """The simulator as an ASGI app: the platform's paths plus `/_sandbox/...` controls."""
        app = Starlette(routes=[*self.routes(), *self._control_routes()])
        app.state.simulator = self
        return app

    def _control_routes(self) -> list[BaseRoute]:
        return [
            Route("/_sandbox", self._describe, methods=["GET"]),
            Route("/_sandbox/faults", self._clear_faults, methods=["DELETE"]),
            Route("/_sandbox/faults/{endpoint}", self._set_fault, methods=["PUT", "DELETE"]),
            Route("/_sandbox/clock", self._move_clock, methods=["POST"]),
            Route("/_sandbox/lifetimes", self._set_lifetimes, methods=["PUT"]),
            Route("/_sandbox/webhooks", self._send_webhook_route, methods=["POST"]),
            Route("/_sandbox/grants", self._issue_grants_route, methods=["POST"]),
        ]

    async def _describe(self, request: Request) -> Response:
        return JSONResponse(
            {
                "platform": self.name,
                "client_id": self.app.client_id,
                "service_id": self.app.service_id,
                "redirect_uri": self.app.redirect_uri,
                "now": self.clock().isoformat(),
                "lifetimes": asdict(self.lifetimes),
                "faults": {k: asdict(v) for k, v in self.faults.active().items()},
                "calls": dict(self.calls),
            }
        )

    async def _set_fault(self, request: Request) -> Response:
        endpoint = request.path_params["endpoint"]
        if request.method == "DELETE":
            self.faults.clear(endpoint)
            return JSONResponse({"cleared": endpoint})
        try:
            data = await request.json()
            fault = Fault.from_json(data if isinstance(data, dict) else {})
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        self.faults.set(endpoint, fault)
        return JSONResponse({"endpoint": endpoint, "fault": asdict(fault)})

    async def _clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return JSONResponse({"cleared": "all"})

    async def _move_clock(self, request: Request) -> Response:
        data = await request.json()
        if isinstance(data, dict) and data.get("reset"):
            self.clock.reset()
        elif isinstance(data, dict) and isinstance(data.get("advance"), int | float):
            self.clock.advance(float(data["advance"]))
        else:
            return JSONResponse({"error": 'send {"advance": seconds} or {"reset": true}'}, 400)
        return JSONResponse({"now": self.clock().isoformat()})

    async def _set_lifetimes(self, request: Request) -> Response:
        data = await request.json()
        if not isinstance(data, dict) or not set(data) <= {"code", "access", "refresh"}:
            return JSONResponse({"error": "send any of code, access, refresh (seconds)"}, 400)
        for key, value in data.items():
            if value is not None and not isinstance(value, int | float):
                return JSONResponse({"error": f"{key} must be a number of seconds or null"}, 400)
            setattr(self.lifetimes, key, value)
        return JSONResponse(asdict(self.lifetimes))

    async def _send_webhook_route(self, request: Request) -> Response:
        data = await request.json()
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return JSONResponse({"error": 'send {"url": ..., "payload": {...}}'}, 400)
        payload = data.get("payload") or {}
        try:
            async with httpx2.AsyncClient(timeout=10) as http:
                answer = await self.send_webhook(http, data["url"], payload)
        except NotImplementedError as exc:
            return JSONResponse({"error": str(exc)}, 404)
        except httpx2.HTTPError as exc:
            return JSONResponse({"error": f"delivery failed: {type(exc).__name__}"}, 502)
        return JSONResponse({"delivered": True, "status": answer.status_code})

    async def _issue_grants_route(self, request: Request) -> Response:
        """`{"logins": [...]}`: the token answers of that many fresh authorizations, in order."""
        try:
            data = await request.json()
        except ValueError:
            data = None
        logins = data.get("logins") if isinstance(data, dict) else None
        if not isinstance(logins, list) or not all(isinstance(x, str) and x for x in logins):
            return JSONResponse({"error": 'send {"logins": ["merchant-1", ...]}'}, 400)
        try:
            grants = self.issue_grants(logins)
        except NotImplementedError as exc:
            return JSONResponse({"error": str(exc)}, 404)
        return JSONResponse({"grants": grants})
