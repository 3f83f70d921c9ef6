"""The dashboard's chart of refreshes and failures by day, as geometry for an inline SVG.

Drawn on the server: no chart library, no script, and it reads the same without JavaScript.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shopkeys.store.overview import DayActivity

WIDTH = 560
HEIGHT = 160
#: Room below the bars for the day labels.
LABELS = 20
_SLOT = 8  # space between days


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Day:
    label: str
    #: Refreshes that worked (bottom of the stack) and failures (on top).
    refreshed: Bar
    failed: Bar
    #: The day's figures in words, for screen readers and the bar's tooltip.
    summary: str
    label_x: float


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    days: list[Day]
    #: The largest day's total: the height of the scale.
    peak: int


def refresh_chart(activity: Sequence[DayActivity]) -> Chart:
    """Stacked bars, one a day: refreshes, with the failures on top."""
    peak = max((a.refreshed + a.failed for a in activity), default=0)
    plot = HEIGHT - LABELS
    slot = WIDTH / max(len(activity), 1)
    bar_width = max(slot - _SLOT, 1.0)
    days = []
    for index, day in enumerate(activity):
        x = index * slot + _SLOT / 2
        ok = plot * day.refreshed / peak if peak else 0.0
        bad = plot * day.failed / peak if peak else 0.0
        days.append(
            Day(
                label=day.day.strftime("%a %d"),
                refreshed=Bar(x, plot - ok, bar_width, ok),
                failed=Bar(x, plot - ok - bad, bar_width, bad),
                summary=(f"{day.day.isoformat()}: {day.refreshed} refreshed, {day.failed} failed"),
                label_x=x + bar_width / 2,
            )
        )
    return Chart(WIDTH, HEIGHT, days, peak)
