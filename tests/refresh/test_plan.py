"""When tokens come due and when failed refreshes are tried again: pure functions, no I/O.

`RefreshPlan` (refresh_plan.py) and the scheduler's backoff (`policy.retry_at`, `hold_until`).
Random inputs come from seeded generators, so every run checks the same cases.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from shopkeys.refresh.policy import FAILURE_HOLD, RETRY_CEILING, RETRY_FIRST, hold_until, retry_at
from shopkeys.refresh_plan import RefreshPlan

NOW = datetime(2030, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def plan(r: float = 0.0, **kwargs: float | timedelta) -> RefreshPlan:
    """The default plan with its random part fixed at `r`."""
    return RefreshPlan(random=lambda: r, **kwargs)  # type: ignore[arg-type]


# -- RefreshPlan ----------------------------------------------------------------------------


def test_the_defaults_are_a_fifth_of_the_life_at_least_five_minutes_ahead() -> None:
    default = RefreshPlan()
    assert default.fraction == 0.2
    assert default.min_lead == timedelta(minutes=5)
    assert default.jitter == 0.1


@pytest.mark.parametrize(
    ("life", "lead"),
    [
        (timedelta(days=7), timedelta(hours=33, minutes=36)),  # a fifth of the life
        (timedelta(days=30), timedelta(days=6)),
        (timedelta(hours=3), timedelta(minutes=36)),
        (timedelta(minutes=30), timedelta(minutes=6)),
        (timedelta(minutes=25), timedelta(minutes=5)),  # a fifth is exactly the floor
        (timedelta(minutes=20), timedelta(minutes=5)),  # the floor
        (timedelta(minutes=2), timedelta(minutes=5)),  # shorter than the lead
        (timedelta(0), timedelta(minutes=5)),
    ],
)
def test_the_lead_is_a_fifth_of_the_life_with_a_five_minute_floor(
    life: timedelta, lead: timedelta
) -> None:
    assert RefreshPlan().lead(life) == lead
    # Without jitter the token comes due exactly one lead before its expiry (or at once).
    expires = NOW + life
    assert plan(0.0).next_refresh(NOW, expires) == max(expires - lead, NOW)


def test_jitter_takes_up_to_a_tenth_of_the_lead_off_never_adds_to_it() -> None:
    life = timedelta(hours=10)
    expires = NOW + life
    lead = RefreshPlan().lead(life)  # 2 hours
    latest = expires - lead
    earliest = expires - lead * 1.1
    assert plan(0.0).next_refresh(NOW, expires) == latest
    assert plan(0.5).next_refresh(NOW, expires) == expires - lead * 1.05
    # random() is in [0, 1): the earliest instant is approached, never passed.
    almost_one = 1.0 - 2**-53
    nearly = plan(almost_one).next_refresh(NOW, expires)
    assert nearly is not None and earliest <= nearly < latest

    rng = random.Random(20300101)
    seen = [RefreshPlan(random=rng.random).next_refresh(NOW, expires) for _ in range(2000)]
    assert all(at is not None and earliest <= at <= latest for at in seen)
    # Spread over the whole window, so tokens issued together do not come due together.
    assert len(set(seen)) > 1900
    spread = max(s for s in seen if s) - min(s for s in seen if s)
    assert spread > lead * 0.1 * 0.95


def test_a_token_shorter_than_the_lead_is_due_at_once() -> None:
    for life in (timedelta(minutes=4, seconds=59), MINUTE, timedelta(seconds=1), timedelta(0)):
        for r in (0.0, 0.5, 0.99):
            assert plan(r).next_refresh(NOW, NOW + life) == NOW
    # Issued already expired (a platform's clock behind ours): due at once, not in the past.
    assert plan().next_refresh(NOW, NOW - HOUR) == NOW


def test_only_a_token_without_expiry_is_never_due() -> None:
    assert plan().next_refresh(NOW, None) is None
    rng = random.Random(7)
    for _ in range(2000):
        issued = NOW + timedelta(seconds=rng.uniform(-1e6, 1e6))
        expires = issued + timedelta(seconds=rng.choice([-1.0, 1.0]) * rng.expovariate(1e-5))
        at = RefreshPlan(random=rng.random).next_refresh(issued, expires)
        assert at is not None, (issued, expires)
        # Never before the token was issued, and before its expiry whenever it has any life.
        assert at >= issued
        if expires > issued:
            assert at < expires
            # ...and at least the floor ahead of it unless that is before the issue.
            assert at == issued or expires - at >= timedelta(minutes=5)


def test_a_long_lived_token_is_still_planned() -> None:
    # The AliExpress sandbox's "never" is a century: a date, not None.
    century = NOW + timedelta(days=36525)
    at = plan().next_refresh(NOW, century)
    assert at is not None and NOW < at < century


def test_the_plan_is_configurable() -> None:
    custom = plan(0.0, fraction=0.5, min_lead=timedelta(minutes=10), jitter=0.0)
    assert custom.next_refresh(NOW, NOW + HOUR) == NOW + timedelta(minutes=30)
    assert custom.next_refresh(NOW, NOW + timedelta(minutes=15)) == NOW + timedelta(minutes=5)


# -- retry_at: the scheduler's backoff ------------------------------------------------------


def backoff(failures: int, **kwargs: object) -> timedelta:
    values: dict[str, object] = {"access_expires_at": None, "retry_after": None, "jitter": 0.0}
    values.update(kwargs)
    return retry_at(failures, NOW, **values) - NOW  # type: ignore[arg-type]


def test_backoff_starts_at_thirty_seconds_and_doubles_to_an_hour() -> None:
    assert timedelta(seconds=30) == RETRY_FIRST
    assert RETRY_CEILING == HOUR
    waits = [backoff(n).total_seconds() for n in range(1, 11)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    # A count of zero (no failure recorded yet) waits as long as the first failure.
    assert backoff(0) == RETRY_FIRST


@pytest.mark.parametrize("failures", [42, 43, 100, 10_000])
def test_backoff_stays_at_the_ceiling_however_many_failures(failures: int) -> None:
    # Days of an outage at the ceiling must not overflow the wait (it did from the 43rd).
    assert backoff(failures) == RETRY_CEILING
    assert backoff(failures, jitter=0.5) == RETRY_CEILING * 0.75


def test_jitter_takes_up_to_half_the_wait_off() -> None:
    for failures in (1, 4, 9):
        full = backoff(failures)
        assert backoff(failures, jitter=0.5) == full * 0.75
        rng = random.Random(failures)
        for _ in range(500):
            wait = backoff(failures, jitter=rng.random())
            assert full / 2 < wait <= full


def test_retry_after_is_respected() -> None:
    # Longer than the backoff: the platform's wait wins.
    assert backoff(1, retry_after=600.0) == timedelta(minutes=10)
    assert backoff(20, retry_after=7200.0) == timedelta(hours=2)
    # Shorter than the backoff: the backoff stands (Retry-After is a floor, not a target).
    assert backoff(5, retry_after=10.0) == timedelta(seconds=480)
    # Jitter never brings the retry before Retry-After.
    rng = random.Random(3)
    for _ in range(200):
        assert backoff(1, retry_after=45.0, jitter=rng.random()) >= timedelta(seconds=45)


def test_never_later_than_halfway_to_the_access_tokens_expiry() -> None:
    expires = NOW + timedelta(minutes=10)
    assert backoff(1, access_expires_at=expires) == timedelta(seconds=30)
    assert backoff(5, access_expires_at=expires) == timedelta(minutes=5)
    assert backoff(30, access_expires_at=expires) == timedelta(minutes=5)
    rng = random.Random(11)
    for _ in range(1000):
        left = timedelta(seconds=rng.uniform(1, 7200))
        wait = backoff(rng.randint(1, 30), access_expires_at=NOW + left, jitter=rng.random())
        assert timedelta(0) < wait <= left / 2
    # An access token that has run out (or never expires) puts no cap on the wait.
    assert backoff(9, access_expires_at=NOW) == RETRY_CEILING
    assert backoff(9, access_expires_at=NOW - MINUTE) == RETRY_CEILING
    assert backoff(9, access_expires_at=None) == RETRY_CEILING


def test_retry_after_beyond_halfway_wins_over_the_cap() -> None:
    # Asking before the platform's Retry-After only earns another 429: the documented order
    # is "never sooner than Retry-After" over "no later than halfway to the expiry".
    expires = NOW + timedelta(minutes=10)
    assert backoff(1, access_expires_at=expires, retry_after=900.0) == timedelta(minutes=15)


def test_hold_until_is_retry_after_or_a_short_hold() -> None:
    assert timedelta(seconds=5) == FAILURE_HOLD
    assert hold_until(NOW, None) == NOW + FAILURE_HOLD
    assert hold_until(NOW, 0.0) == NOW + FAILURE_HOLD
    assert hold_until(NOW, 120.0) == NOW + timedelta(minutes=2)
    assert hold_until(NOW, 0.5) == NOW + timedelta(milliseconds=500)
