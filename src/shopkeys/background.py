"""The work a running instance does besides answering requests: the refresh scheduler, the
outbox of events for the app, and listening for other instances' changes.

`shopkeys serve` runs it beside the web app; `shopkeys worker` runs it alone. Stopping waits for
the refreshes in flight to store what they got, so a shutdown never drops a rotated token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from shopkeys.runtime import Runtime
from shopkeys.store.notifications import listen_for_changes

log = logging.getLogger("shopkeys")

#: How often the outbox looks for events to send.
DELIVERY_INTERVAL = 1.0


class Background:
    """The background tasks of one instance, started together and stopped together."""

    def __init__(self, runtime: Runtime, *, scheduler: bool) -> None:
        self.runtime = runtime
        self.stop_event = asyncio.Event()
        work: list[Coroutine[Any, Any, None]] = [
            listen_for_changes(runtime.engine, runtime.tokens.heard, self.stop_event),
        ]
        if scheduler:
            work.append(runtime.scheduler.run(self.stop_event))
        if runtime.sender is not None:
            work.append(runtime.sender.run_forever(DELIVERY_INTERVAL, self.stop_event))
        self.tasks = [asyncio.create_task(job) for job in work]

    async def wait(self) -> None:
        """Until every task ends (they end when stopped)."""
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Stop the loops, then wait for the refreshes in flight to be stored."""
        self.stop_event.set()
        # The loops end at their next look at the stop event; a task stuck elsewhere (a slow
        # delivery) is cancelled after a grace period. Refreshes run in their own tasks and
        # are waited for below, never cancelled.
        _, stuck = await asyncio.wait(self.tasks, timeout=10.0)
        for task in stuck:
            task.cancel()
        for task in stuck:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runtime.tokens.aclose()
