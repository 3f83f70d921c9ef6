"""The token vault: one repository per concern, all on one database, key ring and clock.

Each repository (`store/connections.py`, `store/auth_sessions.py`, ...) builds on
`store/repository.py`: transactions, retried writes, sealing with the key ring, and the change
notices the token cache listens to. A new concern (refresh leases, webhook deliveries) is one
more repository module and one more attribute here.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from shopkeys.clock import Clock, utc_now
from shopkeys.crypto import KeyRing
from shopkeys.refresh_plan import RefreshPlan
from shopkeys.store.api_keys import ApiKeyRepository
from shopkeys.store.auth_sessions import AuthSessionRepository
from shopkeys.store.connections import ConnectionRepository
from shopkeys.store.deliveries import DeliveryRepository
from shopkeys.store.events import EventRepository
from shopkeys.store.inbox import InboxRepository
from shopkeys.store.leases import LeaseRepository
from shopkeys.store.overview import OverviewRepository
from shopkeys.store.repository import Listener, Storage
from shopkeys.store.stats import StatsRepository


class Vault:
    """Storage of connections, connect sessions, events and API keys."""

    def __init__(
        self,
        engine: AsyncEngine,
        keys: KeyRing,
        *,
        clock: Clock = utc_now,
        plan: RefreshPlan | None = None,
        outbox: bool = False,
    ) -> None:
        """`plan` says when tokens come due for a refresh; `outbox` queues events for the app."""
        self._storage = Storage(engine, keys, clock, plan=plan or RefreshPlan(), outbox=outbox)
        self.connections = ConnectionRepository(self._storage)
        self.sessions = AuthSessionRepository(self._storage)
        self.events = EventRepository(self._storage)
        self.deliveries = DeliveryRepository(self._storage)
        self.leases = LeaseRepository(self._storage)
        self.api_keys = ApiKeyRepository(self._storage)
        self.stats = StatsRepository(self._storage)
        self.overview = OverviewRepository(self._storage)
        self.inbox = InboxRepository(self._storage)

    @property
    def engine(self) -> AsyncEngine:
        return self._storage.engine

    @property
    def clock(self) -> Clock:
        return self._storage.clock

    @property
    def keys(self) -> KeyRing:
        return self._storage.keys

    @keys.setter
    def keys(self, ring: KeyRing) -> None:
        """Seal with `ring` from now on, in every repository (`shopkeys keys rotate`)."""
        self._storage.keys = ring

    def on_change(self, listener: Listener) -> None:
        """Call `listener(connection_id)` after every committed change to a connection."""
        self._storage.listeners.append(listener)

    async def key_ids_in_use(self) -> dict[str, int]:
        """How many stored ciphertexts name each encryption key id, over every table.

        What `shopkeys keys retire` and `doctor` go by: a key is safe to drop only at zero. The
        connections' tokens, and the grants waiting for a merchant's confirmation, which are
        sealed with the same keys.
        """
        counts = await self.connections.key_ids_in_use()
        for key_id, count in (await self.sessions.key_ids_in_use()).items():
            counts[key_id] = counts.get(key_id, 0) + count
        return counts
