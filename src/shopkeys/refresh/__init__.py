"""Valid access tokens on demand, one module a job:

- `policy`: the decisions (serve as is, refresh, give up on a dead grant, serve while retrying),
  pure functions of the stored state, the time and the platform's capability;
- `token_cache`: the hot path's in-memory tokens, each kept for a time to live with jitter;
- `change_feed`: follows the vault's event log, so the cache drops what other processes changed;
- `service`: `TokenService`, which does the I/O around the policy: one refresh per connection at
  a time in this process, the rotated refresh token saved with the refresh, failures recorded;
- `outcomes`: what callers get back, a `FreshToken` or the error saying why there is none.

The scheduler (the next piece: refreshing ahead of expiry, across instances) goes in
`refresh/scheduler.py`. It will find the connections whose tokens near expiry, take a lease on
each in the vault (a `store/leases.py` repository) so that one instance alone refreshes it, ask
`policy.decide` with its own lead time as `min_life`, and run the refresh through the service,
whose per-connection lock already keeps this process's callers to one platform call.
"""

from shopkeys.refresh.change_feed import HOLE_PATIENCE, REVALIDATE_EVERY
from shopkeys.refresh.outcomes import (
    ConnectionNotFound,
    ConnectionUnusable,
    FreshToken,
    NotRefreshable,
)
from shopkeys.refresh.policy import MIN_LIFE
from shopkeys.refresh.service import TokenService
from shopkeys.refresh.token_cache import CACHE_TTL

__all__ = [
    "CACHE_TTL",
    "HOLE_PATIENCE",
    "MIN_LIFE",
    "REVALIDATE_EVERY",
    "ConnectionNotFound",
    "ConnectionUnusable",
    "FreshToken",
    "NotRefreshable",
    "TokenService",
]
