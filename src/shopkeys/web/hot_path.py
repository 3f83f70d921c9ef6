"""`GET /v1/connections/{id}/token`, the route apps call before every platform API call.

It is a plain Starlette route, not a FastAPI one: measured on this kind of machine, FastAPI's
dependency injection and response models cost most of the throughput (docs/architecture.md). The
API key (checked by `ApiKeyGate`) and the token both come from memory when they can; the OpenAPI
entry is declared by hand below.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shopkeys.refresh import FreshToken
from shopkeys.web.problems import problem_response

PATH = "/v1/connections/{connection_id}/token"


async def token_endpoint(request: Request) -> Response:
    runtime = request.app.state.runtime
    connection_id: str = request.path_params["connection_id"]
    # The API key gate has admitted the request already; every scope may read tokens.
    try:
        token = runtime.tokens.cached(connection_id) or await runtime.tokens.fresh_token(
            connection_id
        )
    except Exception as exc:  # mapped to the API's errors; unknown ones are re-raised
        return problem_response(exc)
    return token_response(token)


def token_response(token: FreshToken) -> Response:
    """A token as apps receive it, here and at `GET /v1/token`: never kept by a cache."""
    return Response(render(token), media_type="application/json", headers=_NO_STORE)


_NO_STORE = {"cache-control": "no-store"}


@lru_cache(maxsize=32_768)
def render(token: FreshToken) -> bytes:
    """The JSON body for a token; cached, since the same token is served many times over."""
    return json.dumps(token.to_json()).encode()


def openapi_operation() -> dict[str, Any]:
    """The hand-written OpenAPI entry for the hot path (FastAPI cannot see a Starlette route)."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    return {
        "get": {
            "tags": ["connections"],
            "summary": "A valid access token for the connection",
            "description": "Returns the stored access token when it has enough life left, "
            "otherwise refreshes it first (once, however many callers ask at the same time). "
            "`expires_at` is null for tokens that do not expire (Ecwid). `public_token` is "
            "present when the platform issued one (Ecwid apps with `public_storefront`).",
            "operationId": "get_connection_token",
            "security": [{"ApiKey": []}],
            "parameters": [
                {
                    "name": "connection_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "title": "Connection Id"},
                }
            ],
            "responses": {
                "200": {
                    "description": "The token",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/TokenOut"}}
                    },
                },
                **{
                    str(status): {"description": description, "content": error}
                    for status, description in (
                        (401, "Missing or invalid API key"),
                        (404, "No such connection"),
                        (409, "The connection needs re-authorization"),
                        (429, "The platform rate-limits this app; see Retry-After"),
                        (502, "The platform failed or refused the refresh"),
                    )
                },
            },
        }
    }
