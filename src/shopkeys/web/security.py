"""API keys on `/v1`: an ASGI gate authenticates every request before FastAPI parses anything,
and a dependency checks the key's scope on the idiomatic routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shopkeys.api_keys import allows
from shopkeys.runtime import Runtime
from shopkeys.store.records import ApiKey
from shopkeys.web.errors import ApiError, error_response

API_PREFIX = "/v1/"

# Declared for the OpenAPI document; the gate below does the checking.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `shopkeys apikey create`, as `Authorization: Bearer sk_...`",
)


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def bearer_value(header: str | None) -> str | None:
    """The credential of an `Authorization: Bearer ...` header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def active_key(runtime: Runtime, presented: str | None) -> ApiKey | None:
    """The active API key `presented` is, from memory when it can; None for none or a bad one."""
    if presented is None:
        return None
    known, key = runtime.api_keys.check_cached(presented)
    if not known:
        key = await runtime.api_keys.check(presented)
    return key


def unauthorized(presented: str | None) -> Response:
    """The 401 for a request without an active API key, saying which of the two it was."""
    message = (
        "send an API key as `Authorization: Bearer sk_...`"
        if presented is None
        else "the API key is not valid or was revoked"
    )
    return error_response(401, "unauthorized", message)


class ApiKeyGate:
    """Answers 401 for any `/v1` request without an active API key, before routing or parsing.

    A plain ASGI middleware, so the token hot path pays for a dict lookup and a hash, not for a
    framework layer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        presented = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                presented = bearer_value(value.decode("latin-1"))
                break
        runtime: Runtime = scope["app"].state.runtime
        key = await active_key(runtime, presented)
        if key is None:
            await unauthorized(presented)(scope, receive, send)
            return
        scope.setdefault("state", {})["api_key"] = key
        await self.app(scope, receive, send)


def key_of(request: Request) -> ApiKey:
    """The key the gate admitted for this request."""
    key: ApiKey = request.state.api_key
    return key


def check_scope(key: ApiKey, needed: str) -> None:
    if not allows(key, needed):
        raise ApiError(403, "forbidden", f"this API key's scope ({key.scope}) does not allow this")


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency for keys with `scope` (admin covers read); it also documents the scheme."""

    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiKey:
        key = key_of(request)
        check_scope(key, scope)
        return key

    return dependency
