"""Time as the code sees it: an injected callable, never `datetime.now()` deep inside.

Also the conversions of the numbers platforms send for times and lifetimes. A platform's answer
can hold any number, so they raise `ValueError` alone (never `OverflowError` or `OSError`) for
one that cannot be a credential's time; the caller names the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]

#: No credential lives longer than this. Platforms that mean "never" with a number use a long but
#: finite one (the AliExpress sandbox: 100 years), so twice that is still plausible; more is a
#: broken answer, and would soon overflow `datetime` in arithmetic.
MAX_LIFETIME_YEARS = 200
MAX_LIFETIME = timedelta(days=round(365.25 * MAX_LIFETIME_YEARS))

#: The Unix epoch: no expiry or issue time a platform sends lies before it.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    """The real clock: the current time, timezone-aware UTC."""
    return datetime.now(UTC)


def from_epoch_seconds(value: float) -> datetime:
    """A Unix timestamp in seconds as an aware UTC datetime.

    `ValueError` when it is not finite or lies outside the years `datetime` can hold.
    """
    try:
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError) as exc:
        # OverflowError for huge values (and integers too large for a float), OSError where the
        # C library refuses the year; either way the number is no time at all.
        raise ValueError("outside the range of dates") from exc


def from_epoch_millis(value: float) -> datetime:
    """A Unix timestamp in milliseconds as an aware UTC datetime (`ValueError` as above)."""
    try:
        seconds = value / 1000
    except OverflowError as exc:  # an integer too large for a float
        raise ValueError("outside the range of dates") from exc
    return from_epoch_seconds(seconds)


def lifetime(seconds: float) -> timedelta:
    """A credential's lifetime in seconds as a timedelta.

    `ValueError` unless it is finite and between 0 and `MAX_LIFETIME`: a negative life is no
    life, and a longer one is a broken answer.
    """
    try:
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_LIFETIME.total_seconds():
            raise ValueError(f"not between 0 seconds and {MAX_LIFETIME_YEARS} years")
    except OverflowError as exc:  # an integer too large for a float
        raise ValueError(f"not between 0 seconds and {MAX_LIFETIME_YEARS} years") from exc
    return timedelta(seconds=seconds)


def within_lifetime(moment: datetime, now: datetime) -> datetime:
    """`moment`, if a credential issued by now could expire (or have been issued) then.

    `ValueError` when it lies before the Unix epoch or more than `MAX_LIFETIME` after `now`.
    Times in the recent past pass: a short-lived token and a skewed clock look alike.
    """
    if moment < EPOCH or moment - now > MAX_LIFETIME:
        raise ValueError(f"not between 1970 and {MAX_LIFETIME_YEARS} years from now")
    return moment
