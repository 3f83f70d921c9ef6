"""`/metrics` over a real socket, on both databases: names, zeros, counts, settings, no secrets;
and the counters `shopkeys.metrics` offers the refresh engine."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import httpx2
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select, update

from shopkeys import metrics
from shopkeys.platform import Platform
from shopkeys.store.records import STATUSES
from shopkeys.store.tables import ConnectionRow, DeliveryRow, EventRow
from tests.conftest import SERVICE_API_KEY, serve_service
from tests.service import test_connect_flow as flow
from tests.service.test_api import import_aliexpress
from tests.service.test_connect_flow import Driver, assert_clean

db_vault = flow.db_vault
driver = flow.driver

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

COUNTERS = (
    "shopkeys_refreshes_total",
    "shopkeys_lease_conflicts_total",
    "shopkeys_scheduler_sweeps_total",
    "shopkeys_scheduler_claimed_total",
    "shopkeys_event_deliveries_total",
    "shopkeys_proxy_calls_total",
    "shopkeys_proxy_retries_total",
    "shopkeys_webhooks_received_total",
)
GAUGES = ("shopkeys_connections", "shopkeys_events_pending", "shopkeys_events_failed")


def parse(text: str) -> Samples:
    """Every sample of a scrape, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def connections(samples: Samples, provider: str, status: str) -> float:
    return samples[
        ("shopkeys_connections", frozenset({"provider": provider, "status": status}.items()))
    ]


def plain(samples: Samples, name: str) -> float:
    return samples[(name, frozenset())]


def sample(name: str, **labels: str) -> float:
    """A sample of the process's registry now (0 when absent)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def scrape(driver: Driver, **kwargs: object) -> httpx2.Response:
    return await driver.http.get(f"{driver.url}/metrics", **kwargs)  # type: ignore[arg-type]


# -- the endpoint ------------------------------------------------------------------------------


async def test_names_and_zeros_without_a_key(driver: Driver) -> None:
    answer = await scrape(driver)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in (*COUNTERS, *GAUGES, "shopkeys_refresh_duration_seconds_bucket"):
        assert f"\n{name}" in answer.text, name
    samples = parse(answer.text)
    # Every provider and status is a series from the start: dashboards see zeros, not gaps.
    for provider, status in itertools.product(Platform, STATUSES):
        assert connections(samples, provider, status) == 0
    assert plain(samples, "shopkeys_events_pending") == 0
    assert plain(samples, "shopkeys_events_failed") == 0


async def test_counts_and_no_secrets(driver: Driver) -> None:
    shopline = await driver.connect("shopline", login="metrics-store")
    first = await import_aliexpress(
        driver,
        "ae-metrics-1",
        account_name="Metrics Shop One",
        refresh_token="50000refreshknown0123456789",
    )
    await import_aliexpress(driver, "ae-metrics-2", account_name="Metrics Shop Two")
    await driver.remember_tokens(first["id"])
    assert "50000refreshknown0123456789" in driver.secrets
    async with driver.vault.engine.begin() as connection:
        await connection.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == first["id"])
            .values(status="needs_reauth")
        )
        event_id = await connection.scalar(select(EventRow.id).limit(1))
        now = datetime.now(UTC)
        for number, status in enumerate(("pending", "pending", "failed", "delivered")):
            await connection.execute(
                insert(DeliveryRow).values(
                    id=f"msg_metrics{number}",
                    event_id=event_id,
                    type="connection.created",
                    status=status,
                    next_attempt_at=now,
                    created_at=now,
                )
            )

    answer = await scrape(driver)
    assert answer.status_code == 200, answer.text
    samples = parse(answer.text)
    assert connections(samples, "shopline", "active") == 1
    assert connections(samples, "aliexpress", "active") == 1
    assert connections(samples, "aliexpress", "needs_reauth") == 1
    for provider in ("tiktok_shop", "ecwid"):
        for status in STATUSES:
            assert connections(samples, provider, status) == 0
    assert plain(samples, "shopkeys_events_pending") == 2
    assert plain(samples, "shopkeys_events_failed") == 1

    assert len(driver.secrets) >= 4  # two refreshable grants' tokens, the imported tokens
    assert_clean(answer.text, driver.secrets, "/metrics")
    for shown in (shopline, first):
        for field in ("id", "account_id", "account_name", "end_user_id"):
            if shown.get(field):
                assert str(shown[field]) not in answer.text, field
    assert "Metrics Shop" not in answer.text


async def test_counters_reach_the_endpoint(driver: Driver) -> None:
    def scraped_deliveries(text: str) -> float:
        key = ("shopkeys_event_deliveries_total", frozenset({("outcome", "given_up")}))
        return parse(text)[key]

    before = scraped_deliveries((await scrape(driver)).text)
    metrics.event_delivery("given_up")
    # The service runs in this process, on the same registry; other work only adds to it.
    assert scraped_deliveries((await scrape(driver)).text) >= before + 1


async def test_off_is_not_found(database_url: str, tmp_path: Path) -> None:
    with serve_service(database_url, tmp_path / "data", metrics=False) as live:
        async with httpx2.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{live.url}/metrics")).status_code == 404
            assert (await http.get(f"{live.url}/metrics", headers=live.headers)).status_code == 404
            assert (await http.get(f"{live.url}/healthz")).status_code == 200


async def test_key_required_when_asked(database_url: str, tmp_path: Path) -> None:
    with serve_service(database_url, tmp_path / "data", metrics_require_api_key=True) as live:
        async with httpx2.AsyncClient(timeout=10) as http:
            url = f"{live.url}/metrics"
            for headers in ({}, {"Authorization": "Bearer sk_not_a_key"}, {"Authorization": "x"}):
                answer = await http.get(url, headers=headers)
                assert answer.status_code == 401, answer.text
                assert answer.json()["error"]["code"] == "unauthorized"
                assert "shopkeys_" not in answer.text
            answer = await http.get(url, headers={"Authorization": f"Bearer {SERVICE_API_KEY}"})
            assert answer.status_code == 200, answer.text
            assert "shopkeys_connections{" in answer.text


# -- the counters ------------------------------------------------------------------------------
# The registry is the process's: other tests (and a running service) add to it, so these measure
# what one call adds.


def test_refresh_finished_counts_and_times() -> None:
    refreshes = {"provider": "shopline", "outcome": "refreshed"}
    before = sample("shopkeys_refreshes_total", **refreshes)
    timed = sample("shopkeys_refresh_duration_seconds_count", provider="shopline")
    within = sample("shopkeys_refresh_duration_seconds_bucket", provider="shopline", le="0.25")
    above = sample("shopkeys_refresh_duration_seconds_bucket", provider="shopline", le="0.1")
    metrics.refresh_finished("shopline", "refreshed", 0.2)
    assert sample("shopkeys_refreshes_total", **refreshes) == before + 1
    assert sample("shopkeys_refresh_duration_seconds_count", provider="shopline") == timed + 1
    assert (
        sample("shopkeys_refresh_duration_seconds_bucket", provider="shopline", le="0.25")
        == within + 1
    )
    assert (
        sample("shopkeys_refresh_duration_seconds_bucket", provider="shopline", le="0.1") == above
    )


def test_joined_and_skipped_are_counted_but_not_timed() -> None:
    for outcome in ("joined", "skipped"):
        labels = {"provider": "ecwid", "outcome": outcome}
        before = sample("shopkeys_refreshes_total", **labels)
        timed = sample("shopkeys_refresh_duration_seconds_count", provider="ecwid")
        metrics.refresh_finished("ecwid", outcome, 3.0)
        assert sample("shopkeys_refreshes_total", **labels) == before + 1
        assert sample("shopkeys_refresh_duration_seconds_count", provider="ecwid") == timed


def test_every_outcome_starts_at_zero_for_every_platform() -> None:
    for provider, outcome in itertools.product(Platform, metrics.REFRESH_OUTCOMES):
        labels = {"provider": provider, "outcome": outcome}
        assert metrics.REGISTRY.get_sample_value("shopkeys_refreshes_total", labels) is not None


def test_lease_sweep_and_delivery_counters() -> None:
    conflicts = {
        kind: sample("shopkeys_lease_conflicts_total", kind=kind) for kind in metrics.LEASE_KINDS
    }
    sweeps = sample("shopkeys_scheduler_sweeps_total")
    claimed = sample("shopkeys_scheduler_claimed_total")
    delivered = sample("shopkeys_event_deliveries_total", outcome="delivered")
    retried = sample("shopkeys_event_deliveries_total", outcome="retry")

    metrics.lease_conflict("claim")
    metrics.scheduler_sweep(3)
    metrics.scheduler_sweep(0)
    metrics.event_delivery("delivered")

    assert sample("shopkeys_lease_conflicts_total", kind="claim") == conflicts["claim"] + 1
    assert sample("shopkeys_lease_conflicts_total", kind="refresh") == conflicts["refresh"]
    assert sample("shopkeys_scheduler_sweeps_total") == sweeps + 2
    assert sample("shopkeys_scheduler_claimed_total") == claimed + 3
    assert sample("shopkeys_event_deliveries_total", outcome="delivered") == delivered + 1
    assert sample("shopkeys_event_deliveries_total", outcome="retry") == retried


def test_own_registry_not_the_default() -> None:
    from prometheus_client import REGISTRY as DEFAULT

    assert metrics.REGISTRY is not DEFAULT
    assert DEFAULT.get_sample_value("shopkeys_scheduler_sweeps_total") is None
