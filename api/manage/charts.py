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


#: Series colours of the line charts (SVG presentation attributes: the pages' CSP allows no inline style).
PALETTE = (
    "#6b3e1f", "#b08d57", "#3e6b5a", "#8a4f7d", "#2f5d8a", "#a02b2b",
    "#5f7a1f", "#c27c0e", "#4b4b4b", "#1f7a7a", "#7a1f4b", "#9a9a3a",
)  # fmt: skip


@dataclass(frozen=True)
class RateBar:
    label: str
    y: float
    width: float
    text: str


@dataclass(frozen=True)
class UpliftChart:
    """Treated and control conversion as bars, and the difference with its interval on a zero-centred
    axis (``interval`` None when a group is too small to tell)."""

    width: int
    height: int
    left: float
    plot_w: float
    bars: list[RateBar]
    zero_x: float
    interval: tuple[float, float, float] | None
    interval_text: str
    axis_y: float


def _rate(n: int, of: int) -> float:
    return n / of if of else 0.0


def uplift_chart(
    ordered_treated: int,
    treated: int,
    ordered_control: int,
    control: int,
    interval: tuple[float, float, float] | None,
    width: int = 520,
) -> UpliftChart:
    """One campaign: conversion of the treated and of the control (bars on a 0-100 % scale), and the
    difference treated - control with its 95 % interval ``(difference, low, high)`` on an axis centred
    on zero and wide enough for the interval."""
    left, right = 96.0, 16.0
    plot_w = width - left - right
    bars = []
    for i, (label, n, of) in enumerate(
        (("treated", ordered_treated, treated), ("control", ordered_control, control))
    ):
        rate = _rate(n, of)
        bars.append(RateBar(label, 8 + i * 28, rate * plot_w, f"{rate:.1%} ({n} of {of})"))
    axis_y = 8 + 2 * 28 + 22
    zero_x = left + plot_w / 2
    shown, text = None, "too few to tell: no interval"
    if interval is not None:
        diff, low, high = interval
        span = max(abs(low), abs(high), abs(diff), 0.01) * 1.1
        scale = (plot_w / 2) / span
        shown = (zero_x + diff * scale, zero_x + low * scale, zero_x + high * scale)
        text = f"difference {diff:+.1%}, 95 % interval [{low:+.1%}, {high:+.1%}]"
    return UpliftChart(width, axis_y + 30, left, plot_w, bars, zero_x, shown, text, axis_y)


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    points: str  # the polyline's "x,y x,y ..."
    last: int


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    left: float
    axis_y: float
    series: list[Series]
    max_label: str
    ticks: list[tuple[float, str]]


def line_chart(
    days: list[dt.date], sizes: dict[str, list[int]], width: int = 720, height: int = 240
) -> LineChart | None:
    """One line per series over the days (a single day draws points); the legend gives each last value."""
    if not days or not sizes:
        return None
    top = max(max(v) for v in sizes.values()) or 1
    left, bottom, plot_h = 48.0, 24.0, height - 36.0
    plot_w = width - left - 40  # room for the last day's label
    step = plot_w / max(len(days) - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if len(days) > 1 else plot_w / 2)

    def y(v: int) -> float:
        return height - bottom - v / top * plot_h

    series = [
        Series(
            name,
            PALETTE[k % len(PALETTE)],
            " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values)),
            values[-1],
        )
        for k, (name, values) in enumerate(sizes.items())
    ]
    every = max(1, len(days) // 6)
    ticks = [(x(i), d.strftime("%d %b")) for i, d in enumerate(days) if i % every == 0]
    return LineChart(width, height, left, height - bottom, series, f"{top:,}", ticks)
