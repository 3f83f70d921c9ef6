"""The per-connection queue that keeps calls under a platform's rate, on an injected clock."""

from __future__ import annotations

import pytest

from shopkeys.proxy.pacing import CallPacer, QueueTooLong


class _Time:
    """A clock that only moves when the pacer sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_no_minute_holds_more_calls_than_the_limit() -> None:
    time = _Time()
    pacer = CallPacer(max_wait=3600, clock=time.clock, sleep=time.sleep)
    sent: list[float] = []
    for _ in range(2000):
        waited = await pacer.wait_turn("con_1", 600)
        sent.append(time.now + waited)
    for i, moment in enumerate(sent):
        in_minute = sum(1 for other in sent[i:] if other < moment + 60)
        assert in_minute <= 600
    # Not much slower than the limit either: the first minute sends a burst plus the refill.
    assert sum(1 for moment in sent if moment < sent[0] + 60) >= 590


async def test_a_burst_goes_at_once_and_the_rest_queue_in_order() -> None:
    time = _Time()
    pacer = CallPacer(max_wait=3600, clock=time.clock, sleep=time.sleep)
    waits = [await pacer.wait_turn("con_1", 600) for _ in range(62)]
    assert waits[:60] == [0.0] * 60
    assert 0 < waits[60] < waits[61]
    # Another connection has its own bucket.
    assert await pacer.wait_turn("con_2", 600) == 0.0


async def test_a_call_that_would_wait_too_long_is_refused_with_its_wait() -> None:
    time = _Time()
    pacer = CallPacer(max_wait=1.0, clock=time.clock, sleep=time.sleep)
    for _ in range(60):
        await pacer.wait_turn("con_1", 600)
    assert await pacer.wait_turn("con_1", 600) == pytest.approx(1 / 9)
    for _ in range(8):
        await pacer.wait_turn("con_1", 600)
    with pytest.raises(QueueTooLong) as refused:
        await pacer.wait_turn("con_1", 600)
    assert refused.value.wait > 1.0
    # Refusing reserved nothing: time passing frees turns again.
    time.now += 60
    assert await pacer.wait_turn("con_1", 600) == 0.0
