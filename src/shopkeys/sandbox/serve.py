"""Serve the four simulators on one port for manual use: `python -m shopkeys.sandbox`."""

from __future__ import annotations

import uvicorn
from rich.console import Console
from rich.table import Table

from shopkeys.config import Settings
from shopkeys.redact import guard_logs
from shopkeys.sandbox.app import Sandbox, base_urls, build_sandbox


def describe(sandbox: Sandbox, public_url: str, console: Console) -> None:
    """Print each simulated platform's base URL and the app credentials it accepts."""
    table = Table(title="shopkeys sandbox", show_lines=False)
    for column in ("platform", "base URL", "client id / app key", "secret", "redirect URI"):
        table.add_column(column, overflow="fold")
    urls = base_urls(public_url)
    for name, simulator in sandbox.simulators.items():
        app = simulator.app
        client = app.client_id + (f"\nservice id {app.service_id}" if app.service_id else "")
        table.add_row(
            simulator.display_name, urls[name], client, app.client_secret, app.redirect_uri
        )
    console.print(table)
    console.print(
        "These are sandbox credentials, printed so SDKs and OAuth clients can be pointed at it. "
        "Controls: GET {base}/_sandbox, PUT {base}/_sandbox/faults/{endpoint}, "
        "POST {base}/_sandbox/clock.",
        highlight=False,
    )


def run(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    """Serve the sandbox until interrupted."""
    settings = settings or Settings()
    sandbox = build_sandbox(settings)
    guard_logs()
    describe(sandbox, f"http://{host}:{port}", Console())
    uvicorn.run(sandbox.app, host=host, port=port, log_level="info")
