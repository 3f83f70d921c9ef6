"""API keys for the HTTP API: shown once, stored hashed, checked from memory on the hot path."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from shopkeys.clock import Clock, utc_now
from shopkeys.crypto import fingerprint
from shopkeys.store.records import ApiKey
from shopkeys.store.vault import Vault

log = logging.getLogger("shopkeys")

SCOPES = ("admin", "read")
KEY_PREFIX = "sk_"
#: How long a key checked against the database is trusted from memory. A process that runs no
#: sweep (below) sees a key revoked elsewhere within twice this time; one revoked here, at once.
RECHECK_AFTER = timedelta(seconds=60)
#: How often the service sweeps: it asks the database for keys revoked since its last sweep
#: (`shopkeys apikey revoke` runs in another process) and forgets them, so they get 401 within
#: about this time. Revocations are rare and the table small, so a sweep costs one tiny query.
SWEEP_EVERY = timedelta(seconds=2)
#: How far before the previous sweep each sweep looks: `revoked_at` comes from the revoking
#: process's clock, which may be behind ours, and a revocation commits a moment after it reads
#: that clock. Rows seen twice are harmless: forgetting a revoked key again changes nothing.
SWEEP_OVERLAP = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class _Known:
    key: ApiKey | None  # None: known not to exist or revoked
    checked_at: datetime


class ApiKeys:
    """Creates, checks and revokes API keys."""

    def __init__(self, vault: Vault, *, clock: Clock = utc_now) -> None:
        self.vault = vault
        self.clock = clock
        self._known: dict[str, _Known] = {}
        self._pending: dict[str, asyncio.Task[ApiKey | None]] = {}
        # Every key in memory was read or created after this, and so revoked after it too.
        self._swept_at = clock()

    async def create(
        self, name: str, scope: str = "admin", *, value: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new key; returns its record and its value, which is never shown again."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
        plain = value or KEY_PREFIX + secrets.token_urlsafe(32)
        record = await self.vault.api_keys.create(
            name=name, scope=scope, key_hash=fingerprint(plain), prefix=plain[:10]
        )
        self._known[fingerprint(plain)] = _Known(record, self.clock())
        return record, plain

    async def ensure(self, name: str, value: str, scope: str = "admin") -> ApiKey:
        """The key with this value, created if missing (the sandbox's fixed key)."""
        existing = await self.vault.api_keys.by_hash(fingerprint(value))
        if existing is not None and existing.revoked_at is None:
            return existing
        if existing is not None:
            raise ValueError("that API key was revoked; choose another SHOPKEYS_SANDBOX_API_KEY")
        record, _ = await self.create(name, scope, value=value)
        return record

    def check_cached(self, presented: str) -> tuple[bool, ApiKey | None]:
        """From memory only: (whether memory knows, the active key or None).

        A known good key past its recheck time is still served while one background look-up
        confirms it, so rechecks never stall the hot path.
        """
        digest = fingerprint(presented)
        known = self._known.get(digest)
        if known is None:
            return False, None
        age = self.clock() - known.checked_at
        if age <= RECHECK_AFTER:
            return True, known.key
        if known.key is not None and age <= 2 * RECHECK_AFTER:
            self._look_up(digest)
            return True, known.key
        return False, None

    async def check(self, presented: str) -> ApiKey | None:
        """The active key with this value, or None."""
        known, key = self.check_cached(presented)
        if known:
            return key
        # One database look-up per key at a time, however many requests wait for it.
        return await asyncio.shield(self._look_up(fingerprint(presented)))

    def _look_up(self, digest: str) -> asyncio.Task[ApiKey | None]:
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.get_running_loop().create_task(self._fetch(digest))
            self._pending[digest] = pending
            pending.add_done_callback(lambda _task: self._pending.pop(digest, None))
        return pending

    async def _fetch(self, digest: str) -> ApiKey | None:
        record = await self.vault.api_keys.by_hash(digest)
        active = record if record is not None and record.revoked_at is None else None
        if len(self._known) > 10_000:
            # Bounded: a flood of random keys must not grow memory without end.
            self._known.clear()
        self._known[digest] = _Known(active, self.clock())
        return active

    async def revoke(self, key_id_or_prefix: str) -> ApiKey | None:
        record = await self.vault.api_keys.revoke(key_id_or_prefix)
        if record is not None:
            self._known = {
                h: k for h, k in self._known.items() if not (k.key and k.key.id == record.id)
            }
        return record

    async def drop_revoked(self) -> int:
        """Forget the keys revoked (by any process) since the last sweep; returns how many were
        still trusted from memory."""
        started = self.clock()
        revoked = await self.vault.api_keys.revoked_hashes(self._swept_at - SWEEP_OVERLAP)
        dropped = 0
        for digest in revoked:
            known = self._known.get(digest)
            # Also after a look-up that read the row just before it was revoked.
            if known is not None and known.key is not None:
                self._known[digest] = _Known(None, started)
                dropped += 1
        # Only a sweep that worked moves on: one that failed is covered by the next.
        self._swept_at = started
        return dropped

    async def keep_revocations_seen(self, every: timedelta | None = None) -> None:
        """Sweep every `every` (default `SWEEP_EVERY`), forever (run as a task by the service)."""
        interval = (every if every is not None else SWEEP_EVERY).total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.drop_revoked()
            except Exception:  # a database hiccup must not end the loop
                log.warning("looking for revoked API keys failed; retrying", exc_info=True)

    async def list(self) -> list[ApiKey]:
        return await self.vault.api_keys.all()


def allows(key: ApiKey, needed: str) -> bool:
    """Whether `key`'s scope covers `needed` (admin covers read)."""
    return key.scope == "admin" or key.scope == needed
