"""Server-rendered SVG charts for the pages: no JavaScript, no CDN."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    title: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    axis_y: float
    max_label: str
    ticks: list[tuple[float, str]]


def spend_chart(
    points: list[tuple[dt.date, float]], currency: str = "£", width: int = 640, height: int = 180
) -> BarChart | None:
    """Monthly spend as bars (returns below zero are drawn as zero height; the title gives the amount)."""
    if not points:
        return None
    top = max(max(v for _, v in points), 1.0)
    left, bottom, plot_h = 48.0, 24.0, height - 32.0
    step = (width - left - 8) / len(points)
    bars = []
    ticks = []
    for i, (month, value) in enumerate(points):
        h = max(value, 0.0) / top * plot_h
        x = left + i * step
        amount = f"{currency}{value:,.2f}"
        bars.append(Bar(x + step * 0.1, height - bottom - h, step * 0.8, h, month.strftime("%b %Y"), amount))
        if month.month == 1 or i == 0:
            ticks.append((x + step / 2, month.strftime("%b %Y")))
    return BarChart(width, height, bars, height - bottom, f"{currency}{top:,.0f}", ticks)
