"""`ANY /v1/proxy/{connection_id}/{path}`: an app's call to a platform, signed on its way.

A plain Starlette route like the token hot path: the body is read as bytes (platforms sign it),
and the answer streams back through Starlette without being parsed. The API key gate has
admitted the request already; like the token, the proxy is open to every key scope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from shopkeys.proxy import ApiCall, ProxiedAnswer, call_path
from shopkeys.web.problems import problem_response

PATH: Final = "/v1/proxy/{connection_id}/{path:path}"
OPENAPI_PATH: Final = "/v1/proxy/{connection_id}/{path}"
METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_PREFIX: Final = b"/v1/proxy/"


async def proxy_endpoint(request: Request) -> Response:
    runtime = request.app.state.runtime
    connection_id: str = request.path_params["connection_id"]
    try:
        call = ApiCall.of(
            request.method,
            call_path(_raw_path(request)),
            request.scope.get("query_string", b"").decode("latin-1"),
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]],
            await request.body(),
        )
        answer = await runtime.proxy.send(connection_id, call)
    except Exception as exc:  # mapped to the API's errors; unknown ones are re-raised
        return problem_response(exc)
    if answer.stream is not None:
        return _Streamed(answer, answer.stream)
    # Read whole by the peek: sent as is, without a streaming response's task group.
    response = Response(answer.whole, status_code=answer.status)
    response.raw_headers = _raw(answer.headers)
    return response


class _Streamed(StreamingResponse):
    """The platform's answer, streamed; the upstream connection is released however the
    streaming ends, even when the app goes away before the first byte (a connection left open
    would stay taken in the shared pool)."""

    def __init__(self, answer: ProxiedAnswer, stream: AsyncIterator[bytes]) -> None:
        super().__init__(stream, status_code=answer.status)
        self.raw_headers = _raw(answer.headers)
        self._answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._answer.close()


def _raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Headers set whole, so repeated ones (Set-Cookie) pass as the platform sent them."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def _raw_path(request: Request) -> str:
    """The platform path as the app encoded it, after `/v1/proxy/{connection_id}`.

    The raw path, not the decoded one: `%2F` inside a segment must reach the platform as sent.
    """
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode("latin-1")
    after = raw[len(_PREFIX) :] if raw.startswith(_PREFIX) else raw
    _, _, rest = after.partition(b"/")
    return rest.decode("latin-1")


def openapi_operation() -> dict[str, Any]:
    """The hand-written OpenAPI entry for the proxy (FastAPI cannot see a Starlette route)."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    operation = {
        "tags": ["proxy"],
        "summary": "Call the platform's API with the connection's credentials",
        "description": "Forwards the call to the platform's API host with the connection's "
        "credentials added the platform's way (AliExpress and TikTok Shop signatures, SHOPLINE "
        "and Ecwid Bearer tokens; Ecwid's store id in the path). Query, body and headers pass "
        "on; the answer streams back with the platform's status. An expired access token is "
        "refreshed once and the call sent again (`X-Shopkeys-Refreshed: true`). On TikTok Shop, "
        "`X-Shopkeys-Shop` names the shop whose `shop_cipher` to add.",
        "security": [{"ApiKey": []}],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("connection_id", "path")
        ],
        "responses": {
            "200": {"description": "The platform's answer, whatever its status"},
            **{
                str(status): {"description": description, "content": error}
                for status, description in (
                    (400, "A path or call the platform cannot take"),
                    (401, "Missing or invalid API key"),
                    (404, "No such connection, or its platform is not configured"),
                    (409, "The connection needs re-authorization"),
                    (413, "The body is larger than 16 MiB"),
                    (429, "Too many calls queued for this connection; see Retry-After"),
                    (502, "The platform could not be reached, or a refresh failed"),
                    (504, "The platform did not answer in time"),
                )
            },
        },
    }
    return {
        method.lower(): {**operation, "operationId": f"proxy_{method.lower()}"}
        for method in METHODS
        if method != "HEAD"
    }
