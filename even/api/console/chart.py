"""Grants per day as bar geometry for a server-rendered SVG (templates/_chart.html).

Pure: counts in, rectangles and labels out; the template draws them with presentation
attributes and CSS classes (no script, no inline style). Each bar has a <title> so the count
is read out by screen readers and shown on hover, and the page lists the numbers as a table
too, for anyone who cannot see the chart.
"""

from __future__ import annotations

from dataclasses import dataclass

from even.service.audit_views import DayCount

WIDTH = 520
HEIGHT = 200
LEFT = 40  # room for the y-axis labels
BOTTOM = 30  # room for the date labels
TOP = 10


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: str
    count: int
    label: str | None  # a date label under every few bars, None elsewhere


@dataclass(frozen=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    baseline: float
    bars: list[Bar]
    ticks: list[Tick]
    total: int


def _scale_top(peak: int) -> int:
    """A round maximum for the y axis, at least the peak: 2, 4, 10, 20, 40, 100, …"""
    magnitude = 1
    while True:
        for factor in (2, 4, 10):
            if magnitude * factor >= peak:
                return magnitude * factor
        magnitude *= 10


def build(days: list[DayCount]) -> Chart:
    plot_height = HEIGHT - TOP - BOTTOM
    plot_width = WIDTH - LEFT - 10
    top = _scale_top(max((d.count for d in days), default=0))
    step = plot_width / max(len(days), 1)
    every = max(1, len(days) // 6)
    bars = []
    for index, day in enumerate(days):
        height = plot_height * day.count / top
        bars.append(
            Bar(
                x=round(LEFT + index * step + step * 0.15, 1),
                y=round(TOP + plot_height - height, 1),
                width=round(step * 0.7, 1),
                height=round(height, 1),
                day=day.day,
                count=day.count,
                label=day.day[5:] if index % every == 0 else None,
            )
        )
    ticks = [
        Tick(y=round(TOP + plot_height * (1 - f), 1), value=round(top * f)) for f in (0, 0.5, 1)
    ]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        baseline=TOP + plot_height,
        bars=bars,
        ticks=ticks,
        total=sum(d.count for d in days),
    )
