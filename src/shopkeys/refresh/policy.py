"""When a stored token is handed out as it is, refreshed first, or given up on.

Decisions only: functions of a connection's stored state, the time, and what its platform can do.
No I/O, so each rule can be tested without a database or a platform, and whatever else refreshes
(the scheduler, ahead of expiry) asks the same questions and gets the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from shopkeys.store.records import Connection

#: A token with less life than this is refreshed before it is handed out.
MIN_LIFE = timedelta(minutes=5)
#: The scheduler's wait after a failed refresh: 30 s, doubling with each failure in a row...
RETRY_FIRST = timedelta(seconds=30)
#: ...up to an hour.
RETRY_CEILING = timedelta(hours=1)
#: After a failure that named no wait of its own, no caller or instance asks the platform again
#: for this long: the callers that arrive meanwhile get the same error, not sixteen more calls.
FAILURE_HOLD = timedelta(seconds=5)


class Action(Enum):
    """What to do with a connection whose token was asked for."""

    #: Hand out the stored token as it is.
    SERVE = "serve"
    #: Ask the platform for a new token first.
    REFRESH = "refresh"
    #: The platform has no app configured here: nothing can be done with the connection.
    NOT_CONFIGURED = "not_configured"
    #: Nothing is left to refresh with and the token has run out: the merchant must connect again.
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    #: For `DEAD`: why, in words stored on the connection and shown to the app.
    reason: str | None = None


class Refusal(Enum):
    """Why an explicit refresh has nothing to do."""

    #: The platform's access tokens never expire.
    NEVER_EXPIRES = "never_expires"
    #: The grant came without a refresh token (or none that works).
    NO_REFRESH_TOKEN = "no_refresh_token"


def has_life(expires_at: datetime | None, now: datetime, min_life: timedelta = MIN_LIFE) -> bool:
    """Whether a token expiring at `expires_at` (None: never) has more than `min_life` left."""
    return expires_at is None or expires_at - now > min_life


def expired(expires_at: datetime | None, now: datetime) -> bool:
    """Whether `expires_at` (None: never) has passed."""
    return expires_at is not None and expires_at <= now


def refusal(connection: Connection, *, platform_refreshes: bool) -> Refusal | None:
    """Why asking to refresh `connection` now is pointless, or None when it can be tried."""
    if not platform_refreshes:
        return Refusal.NEVER_EXPIRES
    if not connection.refreshable:
        return Refusal.NO_REFRESH_TOKEN
    return None


def decide(
    connection: Connection,
    now: datetime,
    *,
    platform_refreshes: bool | None,
    forced: bool = False,
    min_life: timedelta = MIN_LIFE,
) -> Decision:
    """What to do for a token of `connection` at `now`.

    `platform_refreshes` is whether the platform's tokens expire and refresh (None: the platform
    is not configured here); `forced` refreshes a token that still has life.
    """
    if not forced and has_life(connection.access_expires_at, now, min_life):
        return Decision(Action.SERVE)
    if platform_refreshes is None:
        return Decision(Action.NOT_CONFIGURED)
    if not platform_refreshes:
        return Decision(Action.SERVE)
    refresh_gone = expired(connection.refresh_expires_at, now)
    if not connection.refreshable or refresh_gone:
        if not expired(connection.access_expires_at, now):
            # Whatever life the token has left is still worth handing out.
            return Decision(Action.SERVE)
        reason = (
            "the refresh token has expired"
            if connection.refreshable
            else "the grant has no refresh token"
        )
        return Decision(Action.DEAD, reason)
    return Decision(Action.REFRESH)


def serve_despite_failure(connection: Connection, now: datetime, *, dead: bool) -> bool:
    """Whether the stored token is still handed out after a refresh failed.

    Only when the failure may pass (the platform did not say the grant is dead) and the token
    has not run out: a token with a little life left beats an error, and the next call retries.
    """
    return not dead and not expired(connection.access_expires_at, now)


def retry_at(
    failures: int,
    now: datetime,
    *,
    access_expires_at: datetime | None,
    retry_after: float | None,
    jitter: float,
) -> datetime:
    """When the scheduler tries again after the `failures`-th failure in a row.

    Exponential with jitter (`jitter` in [0, 1) takes up to half the wait off), so connections
    that failed together do not retry together; never sooner than the platform's `Retry-After`;
    and while the access token still works, no later than halfway to its expiry, so a token
    that can still be saved is tried again in time.
    """
    # The exponent is capped: past the ceiling it changes nothing, and 2**43 of RETRY_FIRST
    # would overflow timedelta after a long outage.
    doublings = min(max(failures - 1, 0), 16)
    wait: timedelta = min(RETRY_CEILING, RETRY_FIRST * 2**doublings)
    wait -= wait * 0.5 * jitter
    at: datetime = now + wait
    if access_expires_at is not None and access_expires_at > now:
        at = min(at, now + (access_expires_at - now) / 2)
    if retry_after:
        at = max(at, now + timedelta(seconds=retry_after))
    return at


def hold_until(now: datetime, retry_after: float | None) -> datetime:
    """Until when a failure is shared with every caller instead of asking the platform again."""
    return now + (timedelta(seconds=retry_after) if retry_after else FAILURE_HOLD)
