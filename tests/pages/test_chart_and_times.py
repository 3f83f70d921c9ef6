"""The dashboard's chart geometry and the pages' times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shopkeys.store.overview import DayActivity
from shopkeys.web.chart import HEIGHT, LABELS, refresh_chart
from shopkeys.web.templating import relative, when

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def test_bars_stack_failures_on_refreshes_to_scale() -> None:
    days = [DayActivity(date(2030, 1, d), ok, bad) for d, ok, bad in ((1, 30, 10), (2, 0, 0))]
    chart = refresh_chart(days)
    assert chart.peak == 40
    busiest, empty = chart.days
    plot = HEIGHT - LABELS
    assert busiest.refreshed.height == plot * 30 / 40
    assert busiest.failed.height == plot * 10 / 40
    assert busiest.failed.y + busiest.failed.height == busiest.refreshed.y
    assert busiest.refreshed.y + busiest.refreshed.height == plot
    assert empty.refreshed.height == empty.failed.height == 0
    assert busiest.summary == "2030-01-01: 30 refreshed, 10 failed"
    assert empty.refreshed.x > busiest.refreshed.x + busiest.refreshed.width


def test_a_week_without_refreshes_draws_nothing() -> None:
    chart = refresh_chart([DayActivity(date(2030, 1, d), 0, 0) for d in range(1, 8)])
    assert chart.peak == 0 and all(d.refreshed.height == 0 for d in chart.days)


def test_relative_times() -> None:
    assert relative(NOW + timedelta(hours=3, minutes=5), NOW) == "in 3 h"
    assert relative(NOW - timedelta(minutes=5), NOW) == "5 min ago"
    assert relative(NOW + timedelta(days=400), NOW) == "in 1 y"
    assert relative(NOW + timedelta(seconds=30), NOW) == "now"
    assert relative(None, NOW) == "—"


def test_times_are_time_elements() -> None:
    assert (
        str(when(NOW)) == '<time datetime="2030-01-01T12:00:00+00:00">2030-01-01 12:00 UTC</time>'
    )
    assert str(when(None, "<never>")) == "&lt;never&gt;"
