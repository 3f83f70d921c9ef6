"""`shopkeys worker`: the refresh scheduler and the event outbox, without the web service."""

from __future__ import annotations

import asyncio
import logging
import signal

from shopkeys.background import Background
from shopkeys.cli.common import database_problem, fail, load_settings
from shopkeys.errors import ConfigurationError
from shopkeys.redact import guard_logs, shown_url
from shopkeys.runtime import open_runtime
from shopkeys.web.request_log import configure_logging

log = logging.getLogger("shopkeys")


def worker() -> None:
    """Refresh tokens ahead of expiry and deliver events, without serving HTTP.

    For deployments that run the web service and the background work apart (set
    SHOPKEYS_SCHEDULER=false on the web instances then). Any number of workers may share one
    PostgreSQL database; on SQLite run one. Stops on SIGTERM or Ctrl-C once the refreshes in
    flight are stored.
    """
    settings = load_settings()
    guard_logs()
    configure_logging(settings.log_format)
    try:
        asyncio.run(_work())
    except ConfigurationError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(database_problem(exc))


async def _work() -> None:
    settings = load_settings()
    runtime = await open_runtime(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    background = Background(runtime, scheduler=True)
    log.info(
        "worker %s started: sweeps every %g s, events %s",
        runtime.tokens.owner,
        settings.refresh_interval,
        "to " + shown_url(settings.webhook_url)
        if settings.webhook_url
        else "not sent (no webhook URL)",
    )
    try:
        await stop.wait()
        log.info("worker stopping: waiting for refreshes in flight")
    finally:
        await background.stop()
        await runtime.close()
