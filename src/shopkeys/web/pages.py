"""The merchant's pages: a connect link's page, the platforms' callbacks, and the results."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from shopkeys.connect import (
    SESSION_LIFETIME,
    AwaitingConfirmation,
    Completed,
    NeedsConfirmation,
)
from shopkeys.crypto import fingerprint
from shopkeys.flow_errors import FlowError, UnknownLink
from shopkeys.platform import Platform
from shopkeys.providers import get
from shopkeys.store.records import Connection
from shopkeys.web.problems import status_of
from shopkeys.web.security import runtime_of
from shopkeys.web.templating import render

log = logging.getLogger("shopkeys.web")
router = APIRouter(include_in_schema=False)

#: The cookie that binds a connect attempt to the browser that opened the link.
BROWSER_COOKIE = "shopkeys_connect"


@router.get("/connect")
async def open_connect_link(request: Request) -> Response:
    """A connect link: the merchant's page that says where they go and what the app may do.

    The link's secret is the `session` query parameter, not a path segment: access logs (ours,
    a proxy's) record paths, and the log redaction recognises secret query parameters.
    """
    token = request.query_params.get("session", "")
    if not token:
        return _failure(request, UnknownLink("This connect link is not valid."))
    # One secret per browser, kept across links: the callback must come back to this browser.
    browser = request.cookies.get(BROWSER_COOKIE) or secrets.token_urlsafe(32)
    try:
        opened = await runtime_of(request).connect.open_link(token, browser=browser)
    except FlowError as exc:
        return _failure(request, exc)
    if isinstance(opened, AwaitingConfirmation):
        return _confirmation_page(request, opened, token)
    response = render(
        request,
        "connect.html",
        {
            "platform": opened.provider.display_name,
            "permissions": opened.provider.permissions_in_words(),
            "session": token,
            "browser_check": _browser_check(browser),
            "expires_at": opened.session.expires_at,
        },
    )
    _bind_browser(request, response, browser)
    return response


@router.post("/connect")
async def go_to_platform(request: Request) -> Response:
    """The connect page's button: on to the platform's authorization page, with a fresh state.

    Only from the page this browser opened: the form's `browser_check` must match this
    browser's cookie. Another site could post an attacker's own connect link here (its secret
    is no CSRF token), but it can neither read the cookie nor get it sent (SameSite=Lax).
    """
    form = await request.form()
    token = form.get("session")
    if not isinstance(token, str) or not token:
        return _failure(request, UnknownLink("This connect link is not valid."))
    browser = request.cookies.get(BROWSER_COOKIE)
    sent = form.get("browser_check")
    if (
        browser is None
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), _browser_check(browser).encode())
    ):
        return _result(
            request,
            403,
            "Open the connect link again",
            "This page did not come from the connect link in this browser. Open the link you "
            "were sent again (cookies must be allowed for this site).",
        )
    runtime = runtime_of(request)
    try:
        url = await runtime.connect.authorization_redirect(token, browser=browser)
    except FlowError as exc:
        return _failure(request, exc)
    if isinstance(url, AwaitingConfirmation):
        return _confirmation_page(request, url, token)
    response = RedirectResponse(url, status_code=303, headers={"cache-control": "no-store"})
    _bind_browser(request, response, browser)
    return response


def _browser_check(browser: str) -> str:
    """What the connect page's form carries to prove it came from this browser's page: derived
    from the cookie's secret, and unlike the hash the connect session stores."""
    return fingerprint(f"connect form:{browser}")[:32]


def _bind_browser(request: Request, response: Response, browser: str) -> None:
    response.set_cookie(
        BROWSER_COOKIE,
        browser,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",  # sent on the platform's top-level redirect back to the callback
        secure=runtime_of(request).settings.public_url.startswith("https://"),
    )


@router.get("/oauth/callback/{provider}")
async def oauth_callback(request: Request, provider: str) -> Response:
    """Where the platform sends the merchant back: complete the connection, or explain why not."""
    runtime = runtime_of(request)
    if not Platform.known(provider):
        return _result(request, 404, "Unknown platform", "There is no such platform here.")
    try:
        done = await runtime.connect.complete(
            provider, dict(request.query_params), browser=request.cookies.get(BROWSER_COOKIE)
        )
    except FlowError as exc:
        log.info("callback for %s refused: %s", provider, exc.reason)
        return _failure(request, exc)
    if isinstance(done, NeedsConfirmation):
        return _finish_elsewhere(request, done)
    return _connected(request, done)


@router.post("/connect/confirm")
async def confirm_connection(request: Request) -> Response:
    """The answer on the confirmation page, from the browser that opened the connect link.

    The link's secret and this browser's cookie together say who answers; SameSite keeps the
    cookie off a form posted from another site.
    """
    form = await request.form()
    token = form.get("session")
    if not isinstance(token, str) or not token:
        return _result(request, 400, "The store was not connected", "The form is incomplete.")
    try:
        done = await runtime_of(request).connect.confirm(
            token,
            browser=request.cookies.get(BROWSER_COOKIE),
            approved=form.get("decision") == "connect",
        )
    except FlowError as exc:
        return _failure(request, exc)
    if done is None:
        return _result(request, 200, "Not connected", "Nothing was connected.")
    return _connected(request, done)


def _finish_elsewhere(request: Request, pending: NeedsConfirmation) -> Response:
    # Nothing about the store or the account here: this browser may be anyone's.
    return _result(
        request,
        200,
        "Almost done",
        f"You authorized on {pending.provider.display_name} in another browser than the one that "
        "opened the connect link. To finish, open the connect link again in that first browser "
        "and confirm there.",
    )


def _confirmation_page(request: Request, waiting: AwaitingConfirmation, token: str) -> Response:
    account = waiting.account
    return render(
        request,
        "confirm.html",
        {
            "platform": waiting.provider.display_name,
            "store": account.name or account.account_id,
            "account_id": account.account_id,
            "session": token,
        },
    )


def _connected(request: Request, done: Completed) -> Response:
    runtime = runtime_of(request)
    provider = done.connection.provider
    log.info(
        "%s %s account %s as %s",
        "installed" if done.installed else "connected",
        provider,
        done.connection.account_id,
        done.connection.id,
    )
    if done.session is None:
        return _installed(
            request, done.connection, runtime.settings.platform(provider).install_return_url
        )
    return_to = runtime.connect.safe_return_to(done.session.return_to)
    if return_to:
        target = _with_query(return_to, {"connection_id": done.connection.id})
        return RedirectResponse(target, status_code=303)
    verb = "connected" if done.created else "reconnected"
    return _result(
        request,
        200,
        "Store connected",
        f"{done.connection.account_name or done.connection.account_id} is {verb}.",
        connection=done.connection,
        platform_name=get(provider).display_name,
        token_url=f"{runtime.settings.public_url.rstrip('/')}/v1/connections/"
        f"{done.connection.id}/token",
    )


def _installed(request: Request, connection: Connection, return_url: str | None) -> Response:
    """After an app market install: the operator's page for it, or shopkeys' own."""
    if return_url:
        # Not a proof of anything: anyone can type this address. The app claims the store only
        # if it is unclaimed, and ties it to its merchant by means of its own (docs/platforms.md).
        target = _with_query(
            return_url,
            {
                "connection_id": connection.id,
                "provider": connection.provider,
                "account_id": connection.account_id,
            },
        )
        return RedirectResponse(target, status_code=303)
    name = connection.account_name or connection.account_id
    return _result(
        request,
        200,
        "App installed",
        f"{name} is connected. Go back to the app to finish setting it up; it will link the "
        "store to your account there.",
        installed=connection,
        platform_name=get(connection.provider).display_name,
    )


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` added to its query, before any fragment."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit(parts._replace(query=query))


#: The merchant's next step after each kind of failure, by its reason code; plain words, since
#: the reader is a merchant, not a developer. The title says what happened.
_OUTCOMES: dict[str, tuple[str, str]] = {
    "declined": (
        "You declined the connection",
        "Nothing was shared with the app. If you meant to connect, go back to the app and "
        "start again.",
    ),
    "expired_session": (
        "This link has expired",
        "Connect links work for a limited time. Go back to the app and ask for a new link.",
    ),
    "expired_state": (
        "This took too long",
        "The authorization was not finished in time. Go back to the app and start again.",
    ),
    "used_session": (
        "This link was already used",
        "Each connect link works once. If your store is not connected yet, ask the app for a "
        "new link.",
    ),
    "unknown_session": (
        "This link does not work",
        "Check that you copied the whole link, or ask the app for a new one.",
    ),
    "platform_error": (
        "The platform had a problem",
        "The platform did not finish the connection. Wait a few minutes and try again from "
        "the app; if it keeps happening, contact the app's support.",
    ),
    "platform_refused": (
        "The platform refused the connection",
        "The platform did not accept this connection. Try again from the app; if it keeps "
        "happening, contact the app's support.",
    ),
}


def _failure(request: Request, exc: FlowError) -> Response:
    """The page for a refused step: what happened, in plain words, and what to do next."""
    title, next_step = _OUTCOMES.get(
        exc.reason,
        ("The store was not connected", "Go back to the app and try again."),
    )
    return _result(
        request, _status(exc), title, exc.message, next_step=next_step, not_connected=True
    )


def _result(request: Request, status: int, title: str, message: str, **extra: Any) -> Response:
    return render(
        request,
        "result.html",
        {"title": title, "message": message, "success": status < 400, **extra},
        status_code=status,
    )


def _status(exc: FlowError) -> int:
    found = status_of(exc)
    return found[0] if found else 400
