"""Signing operators in and out of the web pages.

Operators sign in with an API key of scope `admin`, the credential they already have; the
pages then run on a signed cookie (`operator_session.py`), never on the key itself.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from shopkeys.api_keys import allows
from shopkeys.web.operator_session import FormRejected, OperatorSession, check_csrf
from shopkeys.web.operators import SIGNIN_PATH, PostedForm, cookies_of
from shopkeys.web.security import active_key, runtime_of
from shopkeys.web.templating import render

log = logging.getLogger("shopkeys.web")
router = APIRouter(include_in_schema=False)


def _safe_next(value: object) -> str:
    """Where to go after signing in: a path on this site only, never another site."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value:
        return "/"
    return value


@router.get(SIGNIN_PATH, response_class=HTMLResponse)
async def sign_in_page(request: Request) -> Response:
    cookies = cookies_of(request)
    session = cookies.read(request) or OperatorSession.anonymous()
    return _sign_in_form(request, session, _safe_next(request.query_params.get("next")))


def _sign_in_form(
    request: Request,
    session: OperatorSession,
    next_path: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    response = render(
        request,
        "signin.html",
        {"csrf": session.csrf, "next": next_path, "field_error": error},
        status_code=status_code,
    )
    cookies_of(request).write(response, session)
    return response


@router.post(SIGNIN_PATH)
async def sign_in(request: Request) -> Response:
    cookies = cookies_of(request)
    session = cookies.read(request)
    form = await request.form()
    next_path = _safe_next(form.get("next"))
    try:
        check_csrf(session, form)
    except FormRejected:
        # The form came from elsewhere or its page is too old: a fresh form, nothing checked.
        return _sign_in_form(
            request,
            OperatorSession.anonymous(),
            next_path,
            "This form had expired. Please try again.",
            status_code=403,
        )
    assert session is not None
    presented = form.get("api_key")
    key = await active_key(
        runtime_of(request), presented.strip() if isinstance(presented, str) else None
    )
    if key is None or not allows(key, "admin"):
        # One message for both: which keys exist is not for a stranger to find out.
        return _sign_in_form(
            request,
            session,
            next_path,
            "That is not an active API key of scope admin.",
            status_code=401,
        )
    log.info("operator signed in with API key %s (%s)", key.id, key.name)
    response = RedirectResponse(next_path, status_code=303)
    cookies.write(response, session.signed_in(key, runtime_of(request).clock()))
    return response


@router.post("/signout")
async def sign_out(request: Request, _form: PostedForm) -> Response:
    response = RedirectResponse(SIGNIN_PATH, status_code=303)
    cookies_of(request).clear(response)
    return response
