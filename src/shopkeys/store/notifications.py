"""Hearing at once what other instances change, on PostgreSQL: LISTEN on the changes channel.

Every committed change to a connection NOTIFYs its id (`Repository._after_commit`). An instance
that listens drops that connection's cached token as soon as the change commits, instead of at
its next look at the event log (which stays as the fallback, and the only way on SQLite).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from shopkeys.store.repository import CHANGES_CHANNEL

log = logging.getLogger("shopkeys.store")

#: How long to wait before listening again after the listening connection was lost.
RECONNECT_AFTER = 2.0


async def listen_for_changes(
    engine: AsyncEngine, on_change: Callable[[str], None], stop: asyncio.Event
) -> None:
    """Call `on_change(connection_id)` for every change another process commits, until `stop`.

    A no-op on databases without LISTEN. A lost connection is reopened; `on_change` is also
    called with "" when listening (re)starts, so the caller can revalidate what it missed.
    """
    if engine.dialect.name != "postgresql":
        return
    while not stop.is_set():
        try:
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                lost = asyncio.Event()

                def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:
                    on_change(payload)

                driver.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await driver.add_listener(CHANGES_CHANNEL, heard)
                on_change("")
                try:
                    stopped = asyncio.ensure_future(stop.wait())
                    dropped = asyncio.ensure_future(lost.wait())
                    await asyncio.wait({stopped, dropped}, return_when=asyncio.FIRST_COMPLETED)
                    stopped.cancel()
                    dropped.cancel()
                finally:
                    if not lost.is_set():
                        await driver.remove_listener(CHANGES_CHANNEL, heard)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database restarting must not end the listening
            log.warning("listening for changes failed; trying again", exc_info=True)
        if not stop.is_set():
            await asyncio.sleep(RECONNECT_AFTER)
