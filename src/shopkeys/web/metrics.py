"""`GET /metrics`: the counters of `shopkeys.metrics` and gauges read from the database.

A plain Starlette route, outside `/v1`, so Prometheus scrapes it without an API key unless
`metrics_require_api_key` asks for one. The gauges are counted afresh at every scrape and built
for that scrape alone: concurrent scrapes share no gauge, so none can serve another's numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from shopkeys.config import Settings
from shopkeys.metrics import REGISTRY
from shopkeys.runtime import Runtime
from shopkeys.web.security import active_key, bearer_value, unauthorized

PATH = "/metrics"


async def metrics_endpoint(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    settings: Settings = request.app.state.settings
    if settings.metrics_require_api_key:
        # Any scope will do: every scope may read, and the metrics are less than a read shows.
        presented = bearer_value(request.headers.get("authorization"))
        if await active_key(runtime, presented) is None:
            return unauthorized(presented)
    stats = runtime.vault.stats
    scrape = _Scrape(
        await stats.connections_by_provider_and_status(), await stats.deliveries_by_status()
    )
    return Response(generate_latest(scrape), media_type=CONTENT_TYPE_PLAIN_0_0_4)


class _Scrape:
    """One scrape's collector: the process's counters, then this scrape's gauges."""

    def __init__(self, connections: dict[tuple[str, str], int], deliveries: dict[str, int]) -> None:
        self._connections = connections
        self._deliveries = deliveries

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        by_state = GaugeMetricFamily(
            "shopkeys_connections",
            "Connections stored, by provider and status.",
            labels=("provider", "status"),
        )
        for (provider, status), count in self._connections.items():
            by_state.add_metric((provider, status), count)
        yield by_state
        yield GaugeMetricFamily(
            "shopkeys_events_pending",
            "Events waiting in the outbox to be delivered to the app's webhook.",
            value=self._deliveries.get("pending", 0),
        )
        yield GaugeMetricFamily(
            "shopkeys_events_failed",
            "Events whose delivery to the app's webhook was given up.",
            value=self._deliveries.get("failed", 0),
        )
