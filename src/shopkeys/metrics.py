"""Prometheus counters of what the refresh engine, scheduler, event outbox, API proxy and
webhook inbox do.

The metrics live in their own `REGISTRY`, not the client's global one, so only shopkeys' own
metrics are served and tests can read them without what other libraries register. Labels carry
provider names and fixed outcome words only: never a token, a secret or an account's name.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from shopkeys.platform import Platform

REGISTRY = CollectorRegistry()

#: Outcomes of one call to refresh a connection's tokens.
REFRESH_OUTCOMES = (
    "refreshed",
    "temporary_failure",
    "rate_limited",
    "needs_reauth",
    "joined",
    "skipped",
)
#: Outcomes that did not call the platform, so their time says nothing about its latency.
_NOT_TIMED = frozenset({"joined", "skipped"})

LEASE_KINDS = ("refresh", "claim")
DELIVERY_OUTCOMES = ("delivered", "retry", "given_up")
#: How a call through the proxy ended: the platform's status class, or shopkeys' own refusal.
PROXY_OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "refused")
#: What became of a webhook a platform sent.
WEBHOOK_OUTCOMES = ("accepted", "duplicate", "refused")

_refreshes = Counter(
    "shopkeys_refreshes",
    "Token refreshes finished, by provider and outcome.",
    ("provider", "outcome"),
    registry=REGISTRY,
)
_refresh_duration = Histogram(
    "shopkeys_refresh_duration_seconds",
    "Time a refresh took, platform call included (joined and skipped refreshes left out).",
    ("provider",),
    # Platforms answer in tens of milliseconds to tens of seconds (timeouts, slow retries).
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
_lease_conflicts = Counter(
    "shopkeys_lease_conflicts",
    "Leases another instance held: a connection's refresh lease, or a scheduler claim lost.",
    ("kind",),
    registry=REGISTRY,
)
_sweeps = Counter(
    "shopkeys_scheduler_sweeps",
    "Scheduler sweeps for connections coming due.",
    registry=REGISTRY,
)
_claimed = Counter(
    "shopkeys_scheduler_claimed",
    "Connections the scheduler claimed to refresh.",
    registry=REGISTRY,
)
_deliveries = Counter(
    "shopkeys_event_deliveries",
    "Event deliveries to the app's webhook, by outcome.",
    ("outcome",),
    registry=REGISTRY,
)

_proxy_calls = Counter(
    "shopkeys_proxy_calls",
    "Calls through the API proxy, by provider and outcome (the platform's status class, or "
    "refused: shopkeys answered itself, with 4xx or 5xx).",
    ("provider", "outcome"),
    registry=REGISTRY,
)
_proxy_retries = Counter(
    "shopkeys_proxy_retries",
    "Proxied calls sent again after the platform called the access token expired.",
    ("provider",),
    registry=REGISTRY,
)
_proxy_queued = Histogram(
    "shopkeys_proxy_queue_wait_seconds",
    "How long proxied calls waited for their turn under the platform's published rate.",
    ("provider",),
    buckets=(0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
_webhooks = Counter(
    "shopkeys_webhooks_received",
    "Webhooks the platforms sent, by provider and what became of them.",
    ("provider", "outcome"),
    registry=REGISTRY,
)

# Every known label value starts at zero, so dashboards and rate() see a series from the start.
for _provider in Platform:
    _refresh_duration.labels(provider=_provider.value)
    for _outcome in REFRESH_OUTCOMES:
        _refreshes.labels(provider=_provider.value, outcome=_outcome)
    _proxy_retries.labels(provider=_provider.value)
    _proxy_queued.labels(provider=_provider.value)
    for _outcome in PROXY_OUTCOMES:
        _proxy_calls.labels(provider=_provider.value, outcome=_outcome)
    for _outcome in WEBHOOK_OUTCOMES:
        _webhooks.labels(provider=_provider.value, outcome=_outcome)
for _kind in LEASE_KINDS:
    _lease_conflicts.labels(kind=_kind)
for _outcome in DELIVERY_OUTCOMES:
    _deliveries.labels(outcome=_outcome)


def refresh_finished(provider: str, outcome: str, seconds: float) -> None:
    """Count one refresh of `provider`'s connection ending in `outcome`, which took `seconds`."""
    _refreshes.labels(provider=provider, outcome=outcome).inc()
    if outcome not in _NOT_TIMED:
        _refresh_duration.labels(provider=provider).observe(seconds)


def lease_conflict(kind: str) -> None:
    """Count one lease found held by another instance (`refresh` or `claim`)."""
    _lease_conflicts.labels(kind=kind).inc()


def scheduler_sweep(claimed: int) -> None:
    """Count one scheduler sweep that claimed `claimed` connections."""
    _sweeps.inc()
    _claimed.inc(claimed)


def event_delivery(outcome: str) -> None:
    """Count one attempt to deliver an event (`delivered`, `retry` or `given_up`)."""
    _deliveries.labels(outcome=outcome).inc()


def proxy_call(provider: str, status: int | None) -> None:
    """Count one proxied call: the platform's `status`, or None when shopkeys refused it."""
    outcome = f"{status // 100}xx" if status is not None and 200 <= status < 600 else "refused"
    _proxy_calls.labels(provider=provider, outcome=outcome).inc()


def proxy_retry(provider: str) -> None:
    """Count one proxied call sent again with a refreshed token."""
    _proxy_retries.labels(provider=provider).inc()


def proxy_queued(provider: str, seconds: float) -> None:
    """Note how long one proxied call waited for its turn."""
    _proxy_queued.labels(provider=provider).observe(seconds)


def webhook_received(provider: str, outcome: str) -> None:
    """Count one webhook from `provider`: `accepted`, `duplicate` or `refused`."""
    _webhooks.labels(provider=provider, outcome=outcome).inc()
