"""When a token is refreshed ahead of its expiry: a pure rule, shared by the vault (which stores
each connection's next refresh with its tokens) and the refresh engine (which acts on it).

The lead is a share of the token's lifetime with a floor, so a 7-day token refreshes about 34
hours ahead and a 30-minute one 6 minutes ahead; a random part of the lead is taken off, so
tokens issued together do not all come due together.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RefreshPlan:
    """Refresh when less than `fraction` of a token's lifetime is left, at least `min_lead`
    ahead of its expiry, up to `jitter` (a share of the lead) earlier at random."""

    fraction: float = 0.2
    min_lead: timedelta = timedelta(minutes=5)
    jitter: float = 0.1
    random: Callable[[], float] = field(default=random.random, compare=False)

    def lead(self, lifetime: timedelta) -> timedelta:
        """How long before expiry a token of `lifetime` comes due, before jitter."""
        return max(lifetime * self.fraction, self.min_lead)

    def next_refresh(self, issued_at: datetime, expires_at: datetime | None) -> datetime | None:
        """When a token issued at `issued_at` and expiring at `expires_at` comes due.

        None for a token that never expires. Never before `issued_at`: a token issued with less
        life than the lead is due at once.
        """
        if expires_at is None:
            return None
        lifetime = max(expires_at - issued_at, timedelta(0))
        lead = self.lead(lifetime)
        lead += lead * self.jitter * self.random()
        return max(expires_at - lead, issued_at)
