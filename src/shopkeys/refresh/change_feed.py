"""Following the vault's change feed, so the token cache drops what other processes replaced.

Every change to a connection's tokens or status writes an event in its own transaction; the
follower reads the events written since it last looked and forgets those connections' entries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Protocol

from shopkeys.clock import Clock, utc_now
from shopkeys.refresh.token_cache import TokenCache

log = logging.getLogger("shopkeys.refresh")

#: How often the cache compares its entries with the database, so a change made by another
#: process (the CLI, a second instance) is seen within this time. On PostgreSQL, NOTIFY tells
#: at once and this is the fallback; on SQLite it is the only way.
REVALIDATE_EVERY = timedelta(seconds=1)
#: How long a gap in the event ids is asked for again before it counts as a rolled-back write.
HOLE_PATIENCE = timedelta(minutes=2)


class ChangeFeed(Protocol):
    """Where changes are read from (the vault's event log)."""

    async def last_id(self) -> int: ...

    async def changes_since(
        self, event_id: int, also: Collection[int] = ()
    ) -> list[tuple[int, str | None]]: ...


class ChangeFollower:
    """Drops the cached tokens of connections that changed, reading only what changed."""

    def __init__(self, feed: ChangeFeed, cache: TokenCache, *, clock: Clock = utc_now) -> None:
        self.feed = feed
        self.cache = cache
        self.clock = clock
        self._watermark: int | None = None
        self._holes: dict[int, datetime] = {}

    async def watch_from_now(self) -> None:
        """Start following the feed at its newest event."""
        self._watermark = await self.feed.last_id()
        self._holes.clear()

    async def revalidate(self) -> int:
        """Drop every cached token whose connection changed since the last call; returns how many.

        Reads only the events written since then, so its cost follows the rate of changes, not
        the number of connections. On PostgreSQL a transaction can commit an event id lower than
        one already seen; such gaps ("holes") are asked for again until they fill or age out.
        Before the first call to `watch_from_now` nothing is known: everything is dropped.
        """
        if self._watermark is None:
            await self.watch_from_now()
            return self.cache.clear()
        changes = await self.feed.changes_since(self._watermark, also=self._holes)
        now = self.clock()
        seen = {event_id for event_id, _ in changes}
        newest = max(seen, default=self._watermark)
        for gap in range(self._watermark + 1, newest):
            if gap not in seen:
                self._holes.setdefault(gap, now)
        self._holes = {
            gap: since
            for gap, since in self._holes.items()
            if gap not in seen and now - since < HOLE_PATIENCE
        }
        self._watermark = max(self._watermark, newest)
        dropped = 0
        for _, connection_id in changes:
            if connection_id is not None and connection_id in self.cache:
                self.cache.forget(connection_id)
                dropped += 1
        return dropped

    async def keep_revalidated(self, every: timedelta = REVALIDATE_EVERY) -> None:
        """Revalidate forever (run as a background task by the service)."""
        while True:
            await asyncio.sleep(every.total_seconds())
            try:
                await self.revalidate()
            except Exception:  # a database hiccup must not end the loop
                log.warning("token cache revalidation failed; retrying", exc_info=True)
