"""Small inline-SVG line charts: no JavaScript, no CDN (clusters often have no internet)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 16, 36


@dataclass(frozen=True)
class Series:
    """One line: (x, y) points; y None leaves a gap. `step` draws a staircase."""

    name: str
    color: str
    points: Sequence[tuple[float, float | None]]
    step: bool = False
    dashed: bool = False


@dataclass(frozen=True)
class Marker:
    """A vertical line at x with a label (an action: advance, rollback ...)."""

    x: float
    label: str
    color: str = "#6b7280"


@dataclass(frozen=True)
class Chart:
    title: str
    y_label: str
    series: Sequence[Series]
    x_range: tuple[float, float]
    thresholds: Sequence[tuple[float, str, str]] = ()  # (y, label, color)
    markers: Sequence[Marker] = ()
    y_range: tuple[float, float] | None = None
    x_format: str = "t+{:.0f}s"
    css_class: str = field(default="chart")


def _nice_range(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    low, high = min(finite), max(finite)
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.08
    return low - pad, high + pad


def render(chart: Chart) -> str:
    """The chart as an <svg> element; each data point is a <circle class="point">."""
    x0, x1 = chart.x_range
    if x1 <= x0:
        x1 = x0 + 1
    ys = [y for s in chart.series for _, y in s.points if y is not None]
    ys += [t[0] for t in chart.thresholds]
    y0, y1 = chart.y_range or _nice_range(ys)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        y = min(max(y, y0), y1)
        return TOP + (1 - (y - y0) / (y1 - y0)) * plot_h

    parts = [
        f'<svg class="{chart.css_class}" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(chart.title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" '
        'stroke="#d1d5db"/>',
    ]
    for i in range(5):  # y grid and labels
        value = y0 + (y1 - y0) * i / 4
        y = py(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#374151">{_fmt(value)}</text>'
        )
    for i in range(5):  # x labels
        value = x0 + (x1 - x0) * i / 4
        parts.append(
            f'<text x="{px(value):.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" '
            f'text-anchor="middle" fill="#374151">{escape(chart.x_format.format(value))}</text>'
        )
    parts.append(
        f'<text x="14" y="{TOP + plot_h / 2:.0f}" font-size="11" fill="#374151" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2:.0f})" text-anchor="middle">'
        f"{escape(chart.y_label)}</text>"
    )
    label_ys: list[float] = []
    for y, label, color in sorted(chart.thresholds, key=lambda t: -t[0]):
        label_y = py(y) + 4
        while any(abs(label_y - taken) < 12 for taken in label_ys):
            label_y += 12  # keep close thresholds' labels apart
        label_ys.append(label_y)
        parts.append(
            f'<line class="threshold" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(y):.1f}" '
            f'y2="{py(y):.1f}" stroke="{color}" stroke-dasharray="6 4"/>'
            f'<text x="{LEFT + plot_w + 4}" y="{label_y:.1f}" font-size="11" '
            f'fill="{color}">{escape(label)}</text>'
        )
    for marker in chart.markers:
        x = px(marker.x)
        parts.append(
            f'<line class="marker" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + plot_h}" '
            f'stroke="{marker.color}" stroke-width="1.5"/>'
            f'<text x="{x + 3:.1f}" y="{TOP + 11}" font-size="10" fill="{marker.color}">'
            f"{escape(marker.label)}</text>"
        )
    for index, series in enumerate(chart.series):
        path, previous = [], None
        for x, y in series.points:
            if y is None or not math.isfinite(y):
                previous = None
                continue
            if previous is None:
                path.append(f"M{px(x):.1f},{py(y):.1f}")
            elif series.step:
                path.append(f"H{px(x):.1f}V{py(y):.1f}")
            else:
                path.append(f"L{px(x):.1f},{py(y):.1f}")
            previous = (x, y)
        dash = ' stroke-dasharray="4 3"' if series.dashed else ""
        parts.append(
            f'<path d="{" ".join(path)}" fill="none" stroke="{series.color}" '
            f'stroke-width="2"{dash}/>'
        )
        for x, y in series.points:
            if y is not None and math.isfinite(y):
                parts.append(
                    f'<circle class="point" data-series="{escape(series.name)}" '
                    f'cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{series.color}">'
                    f"<title>{escape(series.name)}: {_fmt(y)}</title></circle>"
                )
        legend_y = TOP + plot_h - 6 - (len(chart.series) - 1 - index) * 16
        parts.append(
            f'<rect x="{LEFT + plot_w + 8}" y="{legend_y - 8}" width="10" height="10" '
            f'fill="{series.color}"/><text x="{LEFT + plot_w + 22}" y="{legend_y + 1}" '
            f'font-size="11" fill="#111827">{escape(series.name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.3f}".rstrip("0").rstrip(".")
