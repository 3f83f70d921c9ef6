"""One connection for operators: its account, shops, scopes and timeline, and what they can do
with it (refresh now, reveal the token, a re-connect link, claim, disconnect)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shopkeys.errors import ShopkeysError
from shopkeys.flow_errors import FlowError
from shopkeys.providers import get
from shopkeys.refresh.outcomes import Outcome
from shopkeys.store.connections import EndUserConflict
from shopkeys.store.overview import Attention
from shopkeys.store.records import Connection
from shopkeys.web.operator_session import Operator
from shopkeys.web.operators import MissingPage, PostedForm, SignedIn, form_text, operator_page
from shopkeys.web.security import runtime_of

log = logging.getLogger("shopkeys.web")
router = APIRouter(include_in_schema=False)

#: The event an operator's reveal of a token records (the log says who, never the token).
REVEALED = "token_revealed"
_REFRESH_OUTCOMES = {
    Outcome.REFRESHED: "The tokens were refreshed.",
    Outcome.JOINED: "The tokens were refreshed (a refresh already under way finished first).",
}


async def existing_connection(
    request: Request, _operator: SignedIn, connection_id: str
) -> Connection:
    """The connection the path names; `MissingPage` when there is none."""
    connection = await runtime_of(request).vault.connections.get(connection_id)
    if connection is None:
        raise MissingPage("connection")
    return connection


Found = Annotated[Connection, Depends(existing_connection)]


async def _show(
    request: Request,
    operator: Operator,
    connection: Connection,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    vault = runtime_of(request).vault
    events = await vault.events.recent(connection.id, limit=100)
    deliveries = await vault.deliveries.recent(limit=20, connection_id=connection.id)
    attention = await vault.overview.attention_of(connection.id) or Attention.HEALTHY
    return operator_page(
        request,
        operator,
        "connection.html",
        {
            "c": connection,
            "platform": get(connection.provider),
            "events": events,
            "deliveries": deliveries,
            "attention": attention,
            "notice": notice,
            "error": error,
            **extra,
        },
        status_code=status_code,
    )


@router.get("/connections/{connection_id}", response_class=HTMLResponse)
async def connection_page(request: Request, operator: SignedIn, found: Found) -> Response:
    return await _show(request, operator, found)


@router.post("/connections/{connection_id}/refresh", response_class=HTMLResponse)
async def refresh_now(
    request: Request, operator: SignedIn, _form: PostedForm, found: Found
) -> Response:
    runtime = runtime_of(request)
    try:
        _, outcome = await runtime.tokens.refresh_with_outcome(found.id)
    except ShopkeysError as exc:
        # The failure is classified and recorded on the connection; its message names no secret.
        notice: str | None = None
        error: str | None = f"The refresh did not work: {exc}"
    else:
        notice = _REFRESH_OUTCOMES.get(outcome)
        error = None if notice else "The refresh did not work; the current token is still valid."
    found = await existing_connection(request, operator, found.id)
    return await _show(
        request, operator, found, notice=notice, error=error, status_code=200 if notice else 502
    )


@router.post("/connections/{connection_id}/reveal", response_class=HTMLResponse)
async def reveal_token(
    request: Request, operator: SignedIn, form: PostedForm, found: Found
) -> Response:
    """The access token, shown once to an operator who confirmed, and recorded as an event."""
    if form.get("confirm") != "yes":
        return operator_page(request, operator, "reveal.html", {"c": found, "confirming": True})
    vault = runtime_of(request).vault
    stored = await vault.connections.tokens(found.id)
    if stored is None:
        return await _show(request, operator, found, error="The connection is gone.")
    await vault.connections.note(
        found.id, REVEALED, {"api_key_id": operator.key.id, "api_key_name": operator.key.name}
    )
    log.info("access token of %s revealed to API key %s", found.id, operator.key.id)
    return operator_page(
        request,
        operator,
        "reveal.html",
        {"c": stored.connection, "token": stored.access_token, "confirming": False},
    )


@router.post("/connections/{connection_id}/reconnect-link", response_class=HTMLResponse)
async def reconnect_link(
    request: Request, operator: SignedIn, _form: PostedForm, found: Found
) -> Response:
    """A connect link for the connection's merchant: following it connects the same store
    again, for the same end user."""
    try:
        link = await runtime_of(request).connect.start(
            found.provider, end_user_id=found.end_user_id
        )
    except FlowError as exc:
        return await _show(request, operator, found, error=exc.message, status_code=400)
    return await _show(request, operator, found, link=link)


@router.post("/connections/{connection_id}/claim", response_class=HTMLResponse)
async def claim(request: Request, operator: SignedIn, form: PostedForm, found: Found) -> Response:
    """Give an unclaimed connection (an app market install) to an end user."""
    end_user_id = form_text(form, "end_user_id", "end user id")
    if end_user_id is None:
        return await _show(
            request,
            operator,
            found,
            error="Give the end user's id.",
            status_code=400,
        )
    try:
        claimed = await runtime_of(request).vault.connections.set_end_user(found.id, end_user_id)
    except EndUserConflict:
        return await _show(
            request,
            operator,
            found,
            error="The connection already belongs to an end user.",
            status_code=409,
        )
    if claimed is None:
        raise MissingPage("connection")
    return await _show(request, operator, claimed, notice=f"Claimed for {end_user_id}.")


@router.post("/connections/{connection_id}/disconnect")
async def disconnect(
    request: Request, operator: SignedIn, _form: PostedForm, found: Found
) -> Response:
    """Forget the connection and its tokens (the platform's authorization is left as it is)."""
    deleted = await runtime_of(request).vault.connections.delete(found.id)
    if deleted is None:
        raise MissingPage("connection")
    log.info("connection %s disconnected by API key %s", found.id, operator.key.id)
    return RedirectResponse("/?notice=disconnected", status_code=303)
