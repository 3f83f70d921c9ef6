"""Browser-facing routes: the home page, connect links and the platforms' callbacks."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from shopkeys.connect import (
    SESSION_LIFETIME,
    AwaitingConfirmation,
    Completed,
    NeedsConfirmation,
)
from shopkeys.flow_errors import FlowError
from shopkeys.platform import Platform
from shopkeys.providers import get
from shopkeys.store.records import Connection
from shopkeys.web.problems import status_of
from shopkeys.web.security import runtime_of

log = logging.getLogger("shopkeys.web")
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)

#: The cookie that binds a connect attempt to the browser that opened the link.
BROWSER_COOKIE = "shopkeys_connect"

#: The end user that connections made from the home page belong to.
HOME_END_USER = "sandbox-user"


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    runtime = runtime_of(request)
    platforms = [
        {"name": p, "display_name": get(p).display_name, "configured": p in runtime.providers}
        for p in Platform
    ]
    sandbox = request.app.state.sandbox is not None
    # This page has no login: outside the sandbox it must not list the merchants' stores (the
    # operator's dashboard, behind authentication, is a separate piece).
    connections = await runtime.vault.connections.find(limit=100) if sandbox else []
    return templates.TemplateResponse(
        request,
        "home.html",
        {
            "platforms": platforms,
            "connections": connections,
            "sandbox": sandbox,
            "app_markets": _app_markets(request, runtime.providers),
        },
    )


class SimulatedPlatforms(Protocol):
    """The sandbox as the pages see it: the web layer links to it but does not import it."""

    def app_market_paths(self) -> Mapping[str, str]:
        """Platform name to the path of its simulated app market, where it has one."""
        ...


def _app_markets(request: Request, configured: Mapping[str, object]) -> list[dict[str, str]]:
    """The sandbox's simulated app markets, for platforms that send installs straight to us."""
    sandbox: SimulatedPlatforms | None = request.app.state.sandbox
    if sandbox is None:
        return []
    return [
        {"display_name": get(name).display_name, "url": path}
        for name, path in sandbox.app_market_paths().items()
        if name in configured
    ]


@router.post("/connect/start/{provider}")
async def start_from_home(request: Request, provider: str) -> Response:
    """The home page's Connect button: a connect session for the home page's end user."""
    runtime = runtime_of(request)
    if request.app.state.sandbox is None:
        # Without a login anyone could start connections for a made-up end user; real
        # connect links come from `POST /v1/connect-sessions`, with an API key.
        return _result(request, 404, "Cannot connect", "Connect links come from the API here.")
    try:
        link = await runtime.connect.start(provider, end_user_id=HOME_END_USER)
    except FlowError as exc:
        return _result(request, _status(exc), "Cannot connect", exc.message)
    return RedirectResponse(link.url, status_code=303)


@router.get("/connect")
async def open_connect_link(request: Request) -> Response:
    """A connect link: redirect to the platform's authorization page with a fresh state.

    The link's secret is the `session` query parameter, not a path segment: access logs (ours,
    a proxy's) record paths, and the log redaction recognises secret query parameters.
    """
    token = request.query_params.get("session", "")
    if not token:
        return _result(request, 404, "This link does not work", "This connect link is not valid.")
    # One secret per browser, kept across links: the callback must come back to this browser.
    browser = request.cookies.get(BROWSER_COOKIE) or secrets.token_urlsafe(32)
    runtime = runtime_of(request)
    try:
        url = await runtime.connect.authorization_redirect(token, browser=browser)
    except FlowError as exc:
        return _result(request, _status(exc), "This link does not work", exc.message)
    if isinstance(url, AwaitingConfirmation):
        return _confirmation_page(request, url, token)
    response = RedirectResponse(url, status_code=302, headers={"cache-control": "no-store"})
    response.set_cookie(
        BROWSER_COOKIE,
        browser,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",  # sent on the platform's top-level redirect back to the callback
        secure=runtime.settings.public_url.startswith("https://"),
    )
    return response


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
        return _result(request, _status(exc), "The store was not connected", exc.message)
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
        return _result(request, _status(exc), "The store was not connected", exc.message)
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
    return templates.TemplateResponse(
        request,
        "confirm.html",
        {
            "platform": waiting.provider.display_name,
            "store": account.name or account.account_id,
            "account_id": account.account_id,
            "session": token,
        },
        headers={"cache-control": "no-store"},
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
    )


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """`url` with `params` added to its query, before any fragment."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit(parts._replace(query=query))


def _result(request: Request, status: int, title: str, message: str, **extra: Any) -> Response:
    return templates.TemplateResponse(
        request,
        "result.html",
        {"title": title, "message": message, "success": status < 400, **extra},
        status_code=status,
    )


def _status(exc: FlowError) -> int:
    found = status_of(exc)
    return found[0] if found else 400
