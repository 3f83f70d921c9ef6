"""The JSON API under `/v1` (the token hot path lives in `hot_path.py`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from shopkeys.importing import TokenImport, import_token
from shopkeys.platform import Platform
from shopkeys.runtime import Runtime
from shopkeys.store.connections import EndUserConflict
from shopkeys.store.records import ApiKey
from shopkeys.web.errors import ApiError, responses
from shopkeys.web.hot_path import token_response
from shopkeys.web.schemas import (
    ConnectionOut,
    ConnectionPage,
    ConnectionPatch,
    ConnectSessionRequest,
    ConnectSessionResponse,
    EventOut,
    Health,
    ImportRequest,
    ImportResponse,
    TokenOut,
)
from shopkeys.web.security import require, runtime_of

router = APIRouter(prefix="/v1")
health_router = APIRouter()

Admin = Annotated[ApiKey, Depends(require("admin"))]
Reader = Annotated[ApiKey, Depends(require("read"))]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


@health_router.get("/healthz", tags=["service"], response_model=Health)
async def healthz(runtime: RuntimeDep) -> Health:
    """Liveness and readiness: the database answers."""
    await runtime.vault.connections.count()
    return Health(
        status="ok",
        database="ok",
        providers={
            name: "configured" if name in runtime.providers else "not configured"
            for name in Platform
        },
    )


@router.post(
    "/connect-sessions",
    tags=["connect"],
    status_code=201,
    response_model=ConnectSessionResponse,
    responses=responses(400, 401, 403, 404, 409, 413),
)
async def create_connect_session(
    body: ConnectSessionRequest, runtime: RuntimeDep, _key: Admin
) -> ConnectSessionResponse:
    """A link for the merchant: it starts the platform's authorization with a fresh state."""
    link = await runtime.connect.start(
        body.provider, end_user_id=body.end_user_id, return_to=body.return_to
    )
    return ConnectSessionResponse(id=link.session_id, url=link.url, expires_at=link.expires_at)


@router.get(
    "/connections",
    tags=["connections"],
    response_model=ConnectionPage,
    responses=responses(401),
)
async def list_connections(
    runtime: RuntimeDep,
    _key: Reader,
    provider: Annotated[Platform | None, Query()] = None,
    end_user_id: str | None = None,
    status: Literal["active", "needs_reauth", "revoked"] | None = None,
    claimed: Annotated[
        bool | None,
        Query(description="false: only connections without an end user (app market installs)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(description="The last id of the previous page")] = None,
) -> ConnectionPage:
    """Connections in id order, filtered, a page at a time."""
    rows = await runtime.vault.connections.find(
        provider=provider,
        end_user_id=end_user_id,
        status=status,
        claimed=claimed,
        limit=limit + 1,
        after=after,
    )
    page = rows[:limit]
    next_after = page[-1].id if len(rows) > limit else None
    return ConnectionPage(data=[ConnectionOut.of(c) for c in page], next_after=next_after)


@router.get(
    "/token",
    tags=["connections"],
    response_model=TokenOut,
    responses=responses(401, 404, 409, 429, 502),
)
async def token_for_end_user(
    runtime: RuntimeDep,
    _key: Reader,
    end_user_id: Annotated[str, Query(min_length=1, max_length=255)],
    provider: Platform | None = None,
) -> Response:
    """The token of the end user's current connection: the store they connected most recently
    (on `provider`, if given). 409 when that store needs the merchant again: an older store is
    never served in its place."""
    current = await runtime.vault.connections.current(end_user_id, provider)
    if current is None:
        raise ApiError(404, "not_found", "that end user has no connection here")
    return token_response(await runtime.tokens.fresh_token(current.id))


@router.post(
    "/connections/import",
    tags=["connections"],
    status_code=201,
    response_model=ImportResponse,
    responses=responses(400, 401, 403, 404, 409, 413, 429, 502),
)
async def import_connection(
    body: ImportRequest, runtime: RuntimeDep, _key: Admin
) -> ImportResponse:
    """Store a token obtained elsewhere; the platform is asked who it belongs to where it can."""
    request = TokenImport(**body.model_dump())
    connection, created = await import_token(
        runtime.vault, runtime.providers, runtime.http, request
    )
    return ImportResponse(connection=ConnectionOut.of(connection), created=created)


@router.get(
    "/connections/{connection_id}",
    tags=["connections"],
    response_model=ConnectionOut,
    responses=responses(401, 404),
)
async def get_connection(connection_id: str, runtime: RuntimeDep, _key: Reader) -> ConnectionOut:
    """One connection, without its tokens."""
    connection = await runtime.vault.connections.get(connection_id)
    if connection is None:
        raise ApiError(404, "not_found", f"no connection {connection_id}")
    return ConnectionOut.of(connection)


@router.patch(
    "/connections/{connection_id}",
    tags=["connections"],
    response_model=ConnectionOut,
    responses=responses(401, 403, 404, 409, 413),
)
async def update_connection(
    connection_id: str, body: ConnectionPatch, runtime: RuntimeDep, _key: Admin
) -> ConnectionOut:
    """Give the connection to an end user: claims a store installed from an app market.

    A connection that belongs to someone else changes hands only when `expected_end_user_id`
    names its current end user (409 `already_claimed` otherwise).
    """
    try:
        connection = await runtime.vault.connections.set_end_user(
            connection_id, body.end_user_id, expected=body.expected_end_user_id
        )
    except EndUserConflict:
        raise ApiError(
            409,
            "already_claimed",
            f"connection {connection_id} belongs to another end user: send its current end "
            "user as expected_end_user_id to move it",
        ) from None
    if connection is None:
        raise ApiError(404, "not_found", f"no connection {connection_id}")
    return ConnectionOut.of(connection)


@router.delete(
    "/connections/{connection_id}",
    tags=["connections"],
    status_code=204,
    responses=responses(401, 403, 404),
)
async def delete_connection(connection_id: str, runtime: RuntimeDep, _key: Admin) -> Response:
    """Forget a connection and its tokens (the platform's authorization is left as it is)."""
    if await runtime.vault.connections.delete(connection_id) is None:
        raise ApiError(404, "not_found", f"no connection {connection_id}")
    return Response(status_code=204)


@router.post(
    "/connections/{connection_id}/refresh",
    tags=["connections"],
    response_model=ConnectionOut,
    responses=responses(401, 403, 404, 409, 429, 502),
)
async def refresh_connection(connection_id: str, runtime: RuntimeDep, _key: Admin) -> ConnectionOut:
    """Refresh the tokens now, whatever their remaining life.

    409 `not_refreshable` when there is nothing to refresh (tokens that never expire, or a grant
    without a refresh token); 409 `needs_reauth` when the platform says the grant is dead.
    """
    await runtime.tokens.refresh(connection_id)
    connection = await runtime.vault.connections.get(connection_id)
    if connection is None:
        raise ApiError(404, "not_found", f"no connection {connection_id}")
    return ConnectionOut.of(connection)


@router.get(
    "/connections/{connection_id}/events",
    tags=["connections"],
    response_model=list[EventOut],
    responses=responses(401),
)
async def connection_events(
    connection_id: str,
    runtime: RuntimeDep,
    _key: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[EventOut]:
    """What happened to the connection, newest first."""
    return [EventOut.of(e) for e in await runtime.vault.events.recent(connection_id, limit=limit)]
