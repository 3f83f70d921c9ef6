"""The hot path's memory: tokens handed out recently, served again without touching the database.

An entry goes when its connection changes (the vault's change notices in this process, the
change feed for other processes), when its token runs short of life, or at the latest after its
time to live: a safety net should the change feed stop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from shopkeys.clock import Clock, utc_now
from shopkeys.refresh.outcomes import FreshToken
from shopkeys.refresh.policy import MIN_LIFE, has_life
from shopkeys.store.records import StoredTokens

#: No entry is served longer than this (plus jitter, so entries loaded together do not all
#: expire together).
CACHE_TTL = timedelta(minutes=10)


@dataclass(slots=True)
class _Entry:
    token: FreshToken
    stale_at: datetime


class TokenCache:
    """Tokens by connection id, each good while it has `min_life` left and for `ttl` at most."""

    def __init__(
        self,
        *,
        clock: Clock = utc_now,
        ttl: timedelta = CACHE_TTL,
        min_life: timedelta = MIN_LIFE,
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.min_life = min_life
        self._entries: dict[str, _Entry] = {}

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, connection_id: str) -> FreshToken | None:
        """The cached token if it is still good to hand out: no I/O."""
        entry = self._entries.get(connection_id)
        if entry is None:
            return None
        now = self.clock()
        if now >= entry.stale_at or not has_life(entry.token.expires_at, now, self.min_life):
            return None
        return entry.token

    def remember(self, stored: StoredTokens) -> FreshToken:
        """Cache the stored connection's token and return it."""
        token = FreshToken.of(stored)
        jitter = self.ttl * random.uniform(0, 0.5)  # spreads expiry; not a secret
        self._entries[token.connection_id] = _Entry(token, self.clock() + self.ttl + jitter)
        return token

    def forget(self, connection_id: str) -> None:
        """Drop the connection's entry, if there is one."""
        self._entries.pop(connection_id, None)

    def clear(self) -> int:
        """Drop every entry; returns how many there were."""
        dropped = len(self._entries)
        self._entries.clear()
        return dropped
