"""Sends the outbox's due deliveries to the app's webhook URL, signed as Standard Webhooks.

Each round claims the due deliveries under a lease (at most one per connection, so a
connection's events arrive in order), POSTs them at once, and records each outcome: a 2xx is
delivered; anything else is tried again later with backoff, until the event is older than the
give-up time. Delivery is at least once: a sender that dies after the app answered but before
the outcome was written sends that event again once its lease runs out, under the same
`webhook-id`, by which the app drops the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random as random_module
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx2

from shopkeys import metrics
from shopkeys.clock import Clock, utc_now
from shopkeys.config import Settings
from shopkeys.events.retry import (
    BACKOFF,
    RETRY_AFTER_STATUSES,
    Backoff,
    response_error,
    retry_after,
)
from shopkeys.events.secret import PREFIX, WebhookSecret, load_webhook_secret
from shopkeys.events.signing import encode_body, webhook_headers
from shopkeys.store.deliveries import Delivery, DeliveryRepository
from shopkeys.store.vault import Vault

log = logging.getLogger("shopkeys.events")

#: How long the app may take to answer (Standard Webhooks recommends 15 to 30 s).
REQUEST_TIMEOUT = 15.0
#: How much of an answer's body is read at most: enough for the excerpt kept with a failure.
READ_AT_MOST = 2048
#: Deliveries sent at once by one sender (and so claimed in one round).
CONCURRENCY = 8


class DeliverySender:
    """Delivers due events to one webhook URL, signed with one secret."""

    def __init__(
        self,
        deliveries: DeliveryRepository,
        http: httpx2.AsyncClient,
        url: str,
        secret: WebhookSecret,
        *,
        clock: Clock = utc_now,
        owner: str,
        give_up_after: timedelta,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = random_module.random,
        concurrency: int = CONCURRENCY,
        timeout: float = REQUEST_TIMEOUT,
        backoff: Backoff = BACKOFF,
    ) -> None:
        self.deliveries = deliveries
        self.http = http
        self.url = url
        self.secret = secret
        self.clock = clock
        self.owner = owner
        self.give_up_after = give_up_after
        self.sleep = sleep
        self.random = random
        self.concurrency = concurrency
        self.timeout = timeout
        self.backoff = backoff
        # Held long enough for every request of a round to finish or time out.
        self.lease = timedelta(seconds=2 * timeout + 30)
        # Taken out of anything a receiver answers, should it echo the secret back.
        self._secrets = (secret.value, secret.value.removeprefix(PREFIX))

    async def run_once(self) -> int:
        """Claim the due deliveries and attempt each once; how many were attempted."""
        now = self.clock()
        claimed = await self.deliveries.claim_due(
            self.owner, now, now + self.lease, self.concurrency
        )
        results = await asyncio.gather(
            *(self._attempt(delivery) for delivery in claimed), return_exceptions=True
        )
        for delivery, result in zip(claimed, results, strict=True):
            if isinstance(result, Exception):
                # Its lease runs out and a later round tries again.
                log.warning(
                    "event %s: could not record the attempt (%s)",
                    delivery.id,
                    type(result).__name__,
                )
            elif isinstance(result, BaseException):
                raise result
        return len(claimed)

    async def run_forever(self, interval: float, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, looking for due events every `interval` seconds."""
        while not stop.is_set():
            try:
                attempted = await self.run_once()
            except Exception as exc:  # the database is away: try again next round
                log.warning("event delivery round failed (%s)", type(exc).__name__)
                attempted = 0
            if not attempted and not stop.is_set():
                await self._pause(interval, stop)

    async def _pause(self, seconds: float, stop: asyncio.Event) -> None:
        """Wait `seconds`, or less if `stop` is set meanwhile."""
        sleeping = asyncio.ensure_future(self.sleep(seconds))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _attempt(self, delivery: Delivery) -> None:
        body = encode_body(delivery.payload)
        timestamp = int(self.clock().timestamp())
        headers = webhook_headers(self.secret.key, delivery.id, timestamp, body)
        wait: float | None = None
        status: int | None = None
        try:
            async with self.http.stream(
                "POST",
                self.url,
                content=body.encode("ascii"),
                headers=dict(headers),
                timeout=self.timeout,
                # Standard Webhooks: a redirect is a failure; the URL is to be fixed instead.
                follow_redirects=False,
            ) as response:
                status = response.status_code
                error = (
                    None
                    if 200 <= status < 300
                    else response_error(status, await _start_of(response), self._secrets)
                )
                if status in RETRY_AFTER_STATUSES:
                    wait = retry_after(response.headers.get("retry-after"), self.clock())
        except httpx2.TimeoutException:
            error = "timed out"
        except httpx2.ConnectError:
            error = "could not connect"
        except httpx2.HTTPError as exc:
            # Only the kind: an exception's text may hold the URL, which may hold a credential.
            error = f"request failed ({type(exc).__name__})"
        if error is None and status is not None:
            await self._delivered(delivery, status)
        else:
            await self._failed(delivery, status, error or f"HTTP {status}", wait)

    async def _delivered(self, delivery: Delivery, status: int) -> None:
        await self.deliveries.delivered(delivery.id, self.owner, status)
        metrics.event_delivery("delivered")
        log.info("event %s (%s) delivered: HTTP %d", delivery.id, delivery.type, status)

    async def _failed(
        self, delivery: Delivery, status: int | None, error: str, wait: float | None
    ) -> None:
        now = self.clock()
        deadline = delivery.created_at + self.give_up_after
        if now >= deadline:
            await self.deliveries.give_up(delivery.id, self.owner, status, error)
            metrics.event_delivery("given_up")
            log.warning(
                "event %s (%s) given up after %d attempts: %s",
                delivery.id,
                delivery.type,
                delivery.attempts + 1,
                error,
            )
            return
        delay = self.backoff.delay(delivery.attempts + 1, self.random)
        if wait is not None and wait > delay:
            delay = min(wait, self.give_up_after.total_seconds())
        # The last attempt is made at the give-up time at the latest, whatever the wait.
        at = min(now + timedelta(seconds=delay), deadline)
        await self.deliveries.retry(delivery.id, self.owner, at, status, error)
        metrics.event_delivery("retry")
        log.info(
            "event %s (%s) not delivered: %s; next attempt in %.0f s",
            delivery.id,
            delivery.type,
            error,
            (at - now).total_seconds(),
        )


async def _start_of(response: httpx2.Response) -> bytes:
    """The first bytes of an answer's body, without reading the rest."""
    start = b""
    async for chunk in response.aiter_bytes():
        start += chunk
        if len(start) >= READ_AT_MOST:
            break
    return start[:READ_AT_MOST]


def webhook_secret_of(settings: Settings) -> WebhookSecret | None:
    """The signing secret the settings ask for, or None when no webhook URL is set.

    SHOPKEYS_WEBHOOK_SECRET, else the data directory's secret file, generated on first use
    (`ConfigurationError` when either is malformed). Read before anything else is opened, so a
    bad secret stops start-up before the database is touched.
    """
    if not settings.webhook_url:
        return None
    configured = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    secret = load_webhook_secret(configured, settings.data_dir)
    if secret.created:
        log.warning(
            "created the webhook signing secret file %s: give its contents to the app, which "
            "verifies events with it (or set SHOPKEYS_WEBHOOK_SECRET)",
            secret.path,
        )
    return secret


def build_sender(
    settings: Settings,
    secret: WebhookSecret | None,
    vault: Vault,
    http: httpx2.AsyncClient,
    *,
    clock: Clock = utc_now,
    owner: str,
) -> DeliverySender | None:
    """The sender the settings ask for, or None when no webhook URL is set."""
    if not settings.webhook_url or secret is None:
        return None
    return DeliverySender(
        vault.deliveries,
        http,
        settings.webhook_url,
        secret,
        clock=clock,
        owner=owner,
        give_up_after=timedelta(seconds=settings.webhook_give_up_after),
    )
