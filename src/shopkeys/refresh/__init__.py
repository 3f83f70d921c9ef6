"""Valid access tokens on demand and ahead of expiry, one module a job:

- `policy`: the decisions (serve as is, refresh, give up on a dead grant, serve while retrying,
  when to retry), pure functions of the stored state, the time and the platform's capability;
- `token_cache`: the hot path's in-memory tokens, each kept for a time to live with jitter;
- `change_feed`: follows the vault's event log, so the cache drops what other processes changed;
- `service`: `TokenService`, which does the I/O around the policy: one refresh per connection
  across callers and instances (leases), the rotated refresh token saved with the refresh;
- `failures`: what a failed refresh leaves for the callers that share it;
- `scheduler`: `Scheduler`, which refreshes every connection ahead of expiry;
- `outcomes`: what callers get back, a `FreshToken` or the error saying why there is none, and
  how a refresh ended.
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
