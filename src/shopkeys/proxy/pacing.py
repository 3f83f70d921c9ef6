"""Keeping an app's calls under a platform's published per-token rate, by queuing them.

A token bucket per connection. Its refill rate is set so that no sliding minute, the window the
platforms count in, holds more than the limit: a bucket of `B` calls refilled at `r` a second lets
`B + 60 r` through in a minute, so with a burst of a tenth of the limit it refills at nine tenths.
Calls beyond the bucket wait their turn in order; one that would wait longer than `max_wait` is
refused at once, with the wait, rather than held.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

#: The share of the per-minute limit that may go out at once.
BURST_SHARE: Final = 0.1


class QueueTooLong(Exception):
    """The call would wait longer than allowed for its turn; `wait` says how long, in seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the call would wait {wait:.1f} s for its turn")
        self.wait = wait


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class CallPacer:
    """Holds each connection's calls to at most `per_minute` in any minute."""

    def __init__(
        self,
        *,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _Bucket] = {}

    async def wait_turn(self, key: str, per_minute: int) -> float:
        """Wait until a call for `key` may go; returns the seconds waited.

        `QueueTooLong` (nothing reserved) when the turn is further off than `max_wait`.
        """
        burst = max(1.0, per_minute * BURST_SHARE)
        rate = (per_minute - burst) / 60.0 if per_minute > burst else per_minute / 60.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=burst, updated=now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        # Taking the token before waiting reserves the turn: later callers queue behind it.
        bucket.tokens -= 1.0
        wait = 0.0 if bucket.tokens >= 0 else -bucket.tokens / rate
        if wait > self.max_wait:
            bucket.tokens += 1.0
            raise QueueTooLong(wait)
        if wait > 0:
            await self._sleep(wait)
        return wait
