"""`shopkeys serve` and `shopkeys sandbox`."""

from __future__ import annotations

import logging
import os
import secrets
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import uvicorn
from rich.panel import Panel

from shopkeys.cli.common import fail, load_settings, out
from shopkeys.config import Settings
from shopkeys.errors import ConfigurationError
from shopkeys.redact import guard_logs
from shopkeys.runtime import build_providers
from shopkeys.web.dashboard import DEMO_END_USER
from shopkeys.web.request_log import configure_logging

if TYPE_CHECKING:
    from fastapi import FastAPI

SANDBOX_KEY_FILE = "sandbox-api-key"


def sandbox_api_key(settings: Settings) -> str:
    """SHOPKEYS_SANDBOX_API_KEY, else a key kept in the data directory across runs."""
    if settings.sandbox_api_key is not None:
        return settings.sandbox_api_key.get_secret_value()
    path = settings.data_dir / SANDBOX_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    value = "sk_sandbox_" + secrets.token_urlsafe(24)
    _write_private(path, value + "\n")
    return value


def _write_private(path: Path, text: str) -> None:
    # Owner only, as the runtime makes it: it will hold the key file and the database too.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def service_app(
    settings: Settings, *, sandbox: bool = False, sandbox_api_key: str | None = None
) -> FastAPI:
    """The service as `shopkeys serve` runs it. With `sandbox`, the four simulators are served
    under `/sandbox/...` and every platform points at them: no credentials, no internet."""
    from shopkeys.sandbox import build_sandbox, point_at_sandbox
    from shopkeys.web import create_app

    if not sandbox:
        return create_app(settings, sandbox_api_key=sandbox_api_key)
    settings = point_at_sandbox(settings)
    return create_app(settings, sandbox=build_sandbox(settings), sandbox_api_key=sandbox_api_key)


# The token route with uvloop and httptools serves about 1.6 times the requests it serves on
# uvicorn's pure-Python defaults (asyncio, h11) on the same machine (README, "Performance"). Named
# here rather than left to uvicorn's `auto`, which would silently fall back; the fallback below
# is only for platforms these packages are not installed on (uvloop has no Windows build).
LOOP = "uvloop" if find_spec("uvloop") else "asyncio"
HTTP = "httptools" if find_spec("httptools") else "h11"


def uvicorn_options(host: str, port: int) -> dict[str, Any]:
    """How `shopkeys serve` runs uvicorn (tests run the app with the same options)."""
    return {
        "host": host,
        "port": port,
        "loop": LOOP,
        "http": HTTP,
        "log_level": "info",
        "proxy_headers": True,
        # The request log (web/request_log.py) replaces uvicorn's access log, and the handler
        # `configure_logging` installed writes uvicorn's own records: uvicorn must not install
        # handlers of its own, which would bypass both the format and the redaction.
        "access_log": False,
        "log_config": None,
    }


def serve(
    sandbox: bool = typer.Option(
        False, "--sandbox", help="Serve the four platform simulators too, and use them."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Serve the API, the connect pages and the OAuth callbacks."""
    settings = load_settings()
    if "public_url" not in settings.model_fields_set:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        settings = settings.model_copy(update={"public_url": f"http://{shown_host}:{port}"})
    base = settings.public_url.rstrip("/")
    try:
        # A bad region or host setting is one line here rather than a traceback at start-up.
        build_providers(settings)
    except ConfigurationError as exc:
        fail(str(exc))
    key = sandbox_api_key(settings) if sandbox else None
    app = service_app(settings, sandbox=sandbox, sandbox_api_key=key)
    configured = [c for c in settings.platforms() if c.configured]
    if sandbox:
        out.print(
            Panel.fit(
                f"shopkeys with the sandbox at [bold]{base}/[/bold]\n\n"
                f"1. Open {base}/ and sign in with the API key below.\n"
                "2. Make a connect link for a platform, open it, and press Authorize.\n"
                "3. Fetch the token of the store you connected with the line below.\n\n"
                f"API key (sandbox): {key}\n"
                f"API docs: {base}/docs    Simulators: {base}/sandbox/{{platform}}/_sandbox",
                title="sandbox",
            )
        )
        # Outside the box and never wrapped, so it can be copied and pasted as it is.
        out.print(
            f"curl -H 'Authorization: Bearer {key}' '{base}/v1/token?end_user_id={DEMO_END_USER}'",
            soft_wrap=True,
            markup=False,
        )
    guard_logs()
    configure_logging(settings.log_format)
    if not sandbox and not configured:
        # A log line, so a JSON log stays all JSON.
        logging.getLogger("shopkeys").warning(
            "no platform has credentials; set them (see `shopkeys doctor`) or run "
            "`shopkeys serve --sandbox`"
        )
    if not sandbox:
        logging.getLogger("shopkeys").info(
            "operators' pages at %s/: sign in with an API key of scope admin "
            "(`shopkeys apikey create NAME`)",
            base,
        )
    try:
        uvicorn.run(app, **uvicorn_options(host, port))
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}")


def sandbox(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Serve only the four platform simulators, for SDKs and OAuth clients to point at."""
    from shopkeys.sandbox.serve import run

    run(host, port, load_settings())
