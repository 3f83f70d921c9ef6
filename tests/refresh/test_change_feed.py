"""The change-feed follower on a scripted event log: late commits, holes, and a fresh start."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from shopkeys.refresh.change_feed import HOLE_PATIENCE, ChangeFollower
from shopkeys.refresh.token_cache import TokenCache
from tests.refresh.conftest import connection, stored
from tests.store.conftest import FakeClock


class ScriptedFeed:
    """An event log whose committed events (id: connection id) the test writes."""

    def __init__(self) -> None:
        self.events: dict[int, str] = {}

    async def last_id(self) -> int:
        return max(self.events, default=0)

    async def changes_since(
        self, event_id: int, also: Collection[int] = ()
    ) -> list[tuple[int, str | None]]:
        wanted = set(also)
        return sorted((i, c) for i, c in self.events.items() if i > event_id or i in wanted)


def cached(cache: TokenCache, *connection_ids: str) -> None:
    for connection_id in connection_ids:
        cache.remember(stored(connection(connection_id=connection_id)))


@dataclass
class Following:
    """A cache, its follower and the scripted feed it reads, on one fake clock."""

    clock: FakeClock = field(default_factory=FakeClock)
    feed: ScriptedFeed = field(default_factory=ScriptedFeed)

    def __post_init__(self) -> None:
        self.cache = TokenCache(clock=self.clock)
        self.follower = ChangeFollower(self.feed, self.cache, clock=self.clock)


async def test_an_event_committed_late_is_still_seen() -> None:
    f = Following()
    feed, cache, follower = f.feed, f.cache, f.follower
    await follower.watch_from_now()
    cached(cache, "con_a", "con_b")

    # Event 1 and 3 are committed; 2 (for con_a) is still in flight in another transaction.
    feed.events = {1: "con_x", 3: "con_b"}
    assert await follower.revalidate() == 1
    assert cache.get("con_a") is not None
    # It commits later, with an id lower than one already seen, and is not missed.
    feed.events[2] = "con_a"
    assert await follower.revalidate() == 1
    assert cache.get("con_a") is None
    assert await follower.revalidate() == 0


async def test_a_hole_is_given_up_after_its_patience() -> None:
    f = Following()
    clock, feed, cache, follower = f.clock, f.feed, f.cache, f.follower
    await follower.watch_from_now()
    cached(cache, "con_a")

    feed.events = {2: "con_x"}  # 1 is a rolled-back write, or one still in flight
    assert await follower.revalidate() == 0
    clock.advance(HOLE_PATIENCE.total_seconds())
    assert await follower.revalidate() == 0  # asked for one last time, then forgotten
    cached(cache, "con_a")
    feed.events[1] = "con_a"
    assert await follower.revalidate() == 0
    assert cache.get("con_a") is not None


async def test_without_a_start_point_everything_is_dropped() -> None:
    f = Following()
    cache, follower = f.cache, f.follower
    f.feed.events = {1: "con_x"}
    cached(cache, "con_a", "con_b")

    assert await follower.revalidate() == 2
    assert len(cache) == 0
    cached(cache, "con_a")
    assert await follower.revalidate() == 0  # it follows from the newest event on
