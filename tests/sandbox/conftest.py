"""Fixtures for the simulator tests."""

from __future__ import annotations

from datetime import datetime

import pytest

from shopkeys.clock import utc_now
from tests.conftest import LiveSandbox


@pytest.fixture
def frozen_now(live_sandbox: LiveSandbox, monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Every simulator's time stands still at the test's start (whole seconds) and moves only when
    the test advances it. An expiry the simulator issued and a time the test reads afterwards are
    then exactly a lifetime apart, however slow the run; on the real clock they drift by the time
    the requests took, which a loaded machine makes seconds.

    The provider clients share their simulator's clock (`LiveSandbox.provider`), so what they sign
    and compute stands still too. The session's simulators get their real clock back afterwards.
    """
    now = utc_now().replace(microsecond=0)
    for simulator in live_sandbox.sandbox.simulators.values():
        # `SandboxClock` is the real clock plus an offset; its code book holds the same object,
        # so the base is replaced in place rather than the clock swapped for another.
        monkeypatch.setattr(simulator.clock, "_base", lambda: now)
    return now
