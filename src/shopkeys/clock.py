"""Time as the code sees it: an injected callable, never `datetime.now()` deep inside."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock: the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def from_epoch_seconds(value: float) -> datetime:
    """A Unix timestamp in seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(value, UTC)


def from_epoch_millis(value: float) -> datetime:
    """A Unix timestamp in milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(value / 1000, UTC)
