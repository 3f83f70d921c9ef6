"""The refresh policy decides from stored state and the time alone: no database, no platform."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shopkeys.refresh.policy import (
    MIN_LIFE,
    Action,
    Refusal,
    decide,
    has_life,
    refusal,
    serve_despite_failure,
)
from tests.refresh.conftest import connection
from tests.store.conftest import START

NOW = START
SECOND = timedelta(seconds=1)


def test_a_token_with_more_than_min_life_left_is_served_as_is() -> None:
    record = connection(access_life=MIN_LIFE + SECOND)
    assert decide(record, NOW, platform_refreshes=True).action is Action.SERVE
    # Even where nothing could refresh it: the token is good as it is.
    assert decide(record, NOW, platform_refreshes=None).action is Action.SERVE
    without = connection(access_life=MIN_LIFE + SECOND, refreshable=False)
    assert decide(without, NOW, platform_refreshes=True).action is Action.SERVE


def test_a_token_within_min_life_is_refreshed() -> None:
    assert not has_life(NOW + MIN_LIFE, NOW)
    for left in (MIN_LIFE, MIN_LIFE - SECOND, timedelta(0), -timedelta(hours=1)):
        decision = decide(connection(access_life=left), NOW, platform_refreshes=True)
        assert decision.action is Action.REFRESH, left


def test_min_life_is_the_callers_to_choose() -> None:
    record = connection(access_life=timedelta(minutes=20))
    assert decide(record, NOW, platform_refreshes=True).action is Action.SERVE
    lead = timedelta(minutes=30)
    assert decide(record, NOW, platform_refreshes=True, min_life=lead).action is Action.REFRESH


def test_a_forced_refresh_refreshes_a_token_with_life_left() -> None:
    record = connection(access_life=timedelta(days=1))
    assert decide(record, NOW, platform_refreshes=True, forced=True).action is Action.REFRESH


def test_a_token_that_never_expires_is_served() -> None:
    record = connection(access_life=None, refresh_life=None, refreshable=False)
    assert decide(record, NOW, platform_refreshes=False).action is Action.SERVE


def test_a_platform_whose_tokens_do_not_expire_serves_and_refuses_an_explicit_refresh() -> None:
    record = connection(access_life=timedelta(0), refreshable=False)
    assert decide(record, NOW, platform_refreshes=False).action is Action.SERVE
    assert decide(record, NOW, platform_refreshes=False, forced=True).action is Action.SERVE
    assert refusal(record, platform_refreshes=False) is Refusal.NEVER_EXPIRES


def test_an_unconfigured_platform_gives_no_token_once_it_needs_refreshing() -> None:
    record = connection(access_life=MIN_LIFE - SECOND)
    assert decide(record, NOW, platform_refreshes=None).action is Action.NOT_CONFIGURED


def test_without_a_refresh_token_the_token_is_served_until_it_runs_out() -> None:
    still = connection(access_life=timedelta(minutes=1), refreshable=False)
    assert decide(still, NOW, platform_refreshes=True).action is Action.SERVE
    assert refusal(still, platform_refreshes=True) is Refusal.NO_REFRESH_TOKEN
    gone = connection(access_life=timedelta(0), refreshable=False)
    decision = decide(gone, NOW, platform_refreshes=True)
    assert decision.action is Action.DEAD
    assert decision.reason == "the grant has no refresh token"


def test_an_expired_refresh_token_is_dead_once_the_token_runs_out() -> None:
    still = connection(access_life=timedelta(minutes=1), refresh_life=-SECOND)
    assert decide(still, NOW, platform_refreshes=True).action is Action.SERVE
    assert decide(still, NOW, platform_refreshes=True, forced=True).action is Action.SERVE
    gone = connection(access_life=-SECOND, refresh_life=timedelta(0))
    decision = decide(gone, NOW, platform_refreshes=True)
    assert decision.action is Action.DEAD
    assert decision.reason == "the refresh token has expired"
    assert refusal(gone, platform_refreshes=True) is None  # trying is for the platform to refuse


def test_a_refresh_token_without_expiry_is_used() -> None:
    record = connection(access_life=-SECOND, refresh_life=None)
    assert decide(record, NOW, platform_refreshes=True).action is Action.REFRESH


@pytest.mark.parametrize(
    ("left", "dead", "serve"),
    [
        (timedelta(minutes=1), False, True),  # a passing failure, a token still valid
        (timedelta(0), False, False),  # nothing left to serve
        (timedelta(minutes=1), True, False),  # the grant is dead: no more tokens from it
    ],
)
def test_after_a_failed_refresh_the_old_token_is_served_only_while_it_is_valid(
    left: timedelta, dead: bool, serve: bool
) -> None:
    assert serve_despite_failure(connection(access_life=left), NOW, dead=dead) is serve
