"""The FastAPI application: JSON API, token hot path, connect pages, and optionally the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from shopkeys.background import Background
from shopkeys.clock import Clock, utc_now
from shopkeys.config import Settings
from shopkeys.crypto import DecryptionError
from shopkeys.redact import guard_logs
from shopkeys.runtime import open_runtime
from shopkeys.version import __version__
from shopkeys.web import (
    api,
    connection_page,
    dashboard,
    hot_path,
    metrics,
    outbox_page,
    pages,
    proxy,
    settings_page,
    signin,
    webhooks,
)
from shopkeys.web.dashboard import SimulatedPlatforms
from shopkeys.web.errors import ApiError, error_response
from shopkeys.web.limits import RequestLimits
from shopkeys.web.operator_session import FormRejected, SignInRequired
from shopkeys.web.operators import FormInvalid, MissingPage, redirect_to_sign_in
from shopkeys.web.problems import STATUSES, problem_response
from shopkeys.web.request_log import RequestLog
from shopkeys.web.schemas import ErrorResponse, TokenOut
from shopkeys.web.security import API_PREFIX, ApiKeyGate
from shopkeys.web.templating import render

SANDBOX_KEY_NAME = "sandbox"
#: The pages' style sheet and script, served from the package: no CDN, no build step.
STATIC = Path(__file__).parent / "static"

log = logging.getLogger("shopkeys.web")


class MountedSandbox(SimulatedPlatforms, Protocol):
    """The simulators served beside the service (`shopkeys serve --sandbox` builds them)."""

    @property
    def app(self) -> Starlette: ...


def create_app(
    settings: Settings | None = None,
    *,
    sandbox: MountedSandbox | None = None,
    sandbox_api_key: str | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """The service. With `sandbox`, its simulators are served too, under their own paths; the
    settings must already point the platforms at them. `sandbox_api_key` is an API key to accept
    from the start."""
    settings = settings or Settings()
    guard_logs()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await open_runtime(settings, clock=clock)
        if sandbox_api_key:
            await runtime.api_keys.ensure(SANDBOX_KEY_NAME, sandbox_api_key)
        app.state.runtime = runtime
        await runtime.tokens.watch_from_now()
        # The scheduler, the outbox and NOTIFY; stopped first at shutdown, so refreshes in
        # flight store what they got before the database closes.
        work = Background(runtime, scheduler=settings.scheduler)
        background = [
            asyncio.create_task(runtime.tokens.keep_revalidated()),
            # What other processes (the CLI) change must reach this one within seconds: a
            # revoked API key, a rotated key file.
            asyncio.create_task(runtime.api_keys.keep_revocations_seen()),
            asyncio.create_task(runtime.vault.keys.keep_following()),
        ]
        # Start-up objects live as long as the process: keep them out of the collector's scans,
        # which otherwise pause the hot path while the token cache fills.
        gc.freeze()
        try:
            yield
        finally:
            await work.stop()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runtime.close()

    app = FastAPI(
        title="shopkeys",
        version=__version__,
        description="OAuth connections to AliExpress, TikTok Shop, SHOPLINE and Ecwid, kept valid.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.sandbox = sandbox
    app.add_middleware(ApiKeyGate)
    # Outermost: nothing, not even the key check, sees a request these limits refuse.
    app.add_middleware(RequestLimits)
    # Outside even those: a request they refuse is logged too (web/request_log.py).
    app.add_middleware(RequestLog)
    # The hot path goes first so FastAPI's `/v1/connections/{id}` routes never shadow it.
    app.router.routes.insert(0, Route(hot_path.PATH, hot_path.token_endpoint, methods=["GET"]))
    app.router.routes.insert(1, Route(proxy.PATH, proxy.proxy_endpoint, methods=proxy.METHODS))
    app.include_router(api.health_router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(webhooks.router)
    for operators in (signin, dashboard, connection_page, outbox_page, settings_page):
        app.include_router(operators.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if settings.metrics:
        app.router.routes.append(Route(metrics.PATH, metrics.metrics_endpoint, methods=["GET"]))
    if sandbox is not None:
        app.router.routes.extend(sandbox.app.routes)

    # Every failure the table knows answers in the one error shape, with the table's status.
    known: list[type[Exception]] = [ApiError, *STATUSES]
    for kind in known:
        app.add_exception_handler(kind, _problem)
    app.add_exception_handler(DecryptionError, _undecryptable)
    app.add_exception_handler(SignInRequired, _sign_in_first)
    app.add_exception_handler(FormRejected, _form_rejected)
    app.add_exception_handler(MissingPage, _missing_page)
    app.add_exception_handler(FormInvalid, _form_invalid)
    # Anything else unforeseen: still the error shape, and the connection closed cleanly so the
    # client's next request on it does not meet a reset.
    app.add_exception_handler(Exception, _server_error)
    # Every API failure has the one error shape, FastAPI's own 404/405/422 included.
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _problem(request: Request, exc: Exception) -> Response:
    return problem_response(exc)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Where and what only: pydantic's `input` would echo the request, tokens included.
    problems = [
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
        for error in exc.errors()
    ]
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")


async def _sign_in_first(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return redirect_to_sign_in(exc.next_path)


async def _form_rejected(request: Request, exc: Exception) -> Response:
    # A form without this session's CSRF token: posted from another site, or from a page
    # older than the session. Nothing was done; reloading the page gives a working form.
    message = "Nothing was changed. Go back, reload the page and try again."
    return _page_error(request, 403, "This form has expired", message)


async def _form_invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FormInvalid)
    return _page_error(request, 400, "The form was not valid", exc.message)


async def _missing_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MissingPage)
    return _page_error(request, 404, f"No such {exc.what}", "It may have been deleted.", back="/")


def _page_error(
    request: Request, status: int, title: str, message: str, back: str | None = None
) -> Response:
    """An operator page's refusal, in the pages' layout rather than the API's JSON."""
    context = {"title": title, "message": message, "success": False, "back": back}
    return render(
        request,
        "result.html",
        {**context, "back_label": "Back to the dashboard"},
        status_code=status,
    )


async def _undecryptable(request: Request, exc: Exception) -> Response:
    log.error("a stored token cannot be decrypted (%s): check the key ring", request.url.path)
    return error_response(
        500,
        "undecryptable",
        "a stored token cannot be decrypted with the configured keys (see `shopkeys doctor`)",
        connection="close",
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette logs the exception itself after this answer is sent.
    return error_response(
        500, "internal_error", "the service failed; the error is in its log", connection="close"
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not request.url.path.startswith(API_PREFIX):
        return await http_exception_handler(request, exc)
    return error_response(
        exc.status_code,
        _HTTP_CODES.get(exc.status_code, "http_error"),
        str(exc.detail),
        **(exc.headers or {}),
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the hand-declared hot path and the models only it uses."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schema["paths"][hot_path.PATH] = hot_path.openapi_operation()
    schema["paths"][proxy.OPENAPI_PATH] = proxy.openapi_operation()
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorResponse, TokenOut):
        for name, definition in _component_schemas(model).items():
            components.setdefault(name, definition)
    # Validation errors are answered in the error shape (`_invalid_request`), so document that
    # instead of FastAPI's default `HTTPValidationError`.
    for operations in schema["paths"].values():
        for operation in operations.values():
            if "422" in operation.get("responses", {}):
                operation["responses"]["422"] = {
                    "description": "The request is not valid",
                    "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema


_ERROR_REF = "#/components/schemas/ErrorResponse"


def _component_schemas(model: type[ErrorResponse] | type[TokenOut]) -> dict[str, Any]:
    """`model`'s schema and the schemas it refers to, each as its own component (a nested
    `$defs` would leave `#/components/schemas/...` references that do not resolve)."""
    definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
    nested: dict[str, Any] = definition.pop("$defs", {})
    return {model.__name__: definition, **nested}
