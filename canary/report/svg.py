"""Small inline-SVG line charts: no JavaScript, no CDN (clusters often have no internet).

Axes get round tick values (1, 2, 2.5 or 5 times a power of ten; whole seconds,
minutes or hours on the time axis, wall-clock HH:MM for analyses longer than
`WALL_CLOCK_AFTER`). Each series has its own colour and dash pattern, shown in a
legend above the plot; points outside a fixed y range are drawn at the edge as
triangles (class "clipped") instead of vanishing; markers (step changes, the decision)
are vertical lines with labels staggered so close ones stay readable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

WIDTH = 760  # the wide rendering; pages add a NARROW one for phones
NARROW = 370
LEFT, RIGHT, BOTTOM = 58, 52, 36
PLOT_HEIGHT = 170
LEGEND_ROW = 18
#: Analyses longer than this get wall-clock (UTC) labels on the time axis.
WALL_CLOCK_AFTER = 1800.0

_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


@dataclass(frozen=True)
class Series:
    """One line: (x, y) points; y None leaves a gap. `step` draws a staircase;
    `dash` is an SVG stroke-dasharray ("" for a solid line)."""

    name: str
    color: str
    points: Sequence[tuple[float, float | None]]
    step: bool = False
    dash: str = ""


@dataclass(frozen=True)
class Marker:
    """A vertical line at x with a label (a step change, the decision ...)."""

    x: float
    label: str
    color: str = "#6b7280"
    kind: str = "action"  # action | decision


@dataclass(frozen=True)
class Chart:
    title: str
    y_label: str
    series: Sequence[Series]
    x_range: tuple[float, float]  # seconds since `start`
    thresholds: Sequence[tuple[float, str, str]] = ()  # (y, label, color)
    markers: Sequence[Marker] = ()
    y_range: tuple[float, float] | None = None  # fixed; points outside are clipped
    start: datetime | None = None  # wall-clock time of x = 0
    y_unit: str = ""  # appended to tick labels, e.g. "%"
    css_class: str = field(default="chart")


def nice_step(span: float, target: int = 5) -> float:
    """The round step (1, 2, 2.5 or 5 x 10^k) giving about `target` intervals over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if factor * power >= raw:
            return factor * power
    return 10.0 * power


def nice_ticks(low: float, high: float, target: int = 5) -> list[float]:
    """Round tick values covering [low, high] (extended outward to whole steps)."""
    if high <= low:
        high = low + 1.0
    step = nice_step(high - low, target)
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    count = round((last - first) / step)
    return [_clean(first + i * step, step) for i in range(count + 1)]


def _clean(value: float, step: float) -> float:
    digits = max(0, -math.floor(math.log10(step)) + 2)
    value = round(value, digits)
    return 0.0 if value == 0 else value


def time_ticks(low: float, high: float, target: int = 6) -> tuple[float, list[float]]:
    """(step, ticks): whole seconds/minutes/hours between `low` and `high` seconds."""
    span = max(high - low, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= target), _TIME_STEPS[-1])
    while span / step > target:
        step *= 2
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9:
        ticks.append(float(value))
        value += step
    return float(step), ticks


def _time_label(seconds: float, step: float) -> str:
    if seconds == 0:
        return "t+0"
    if step >= 3600 and seconds % 3600 == 0:
        return f"t+{seconds / 3600:.0f}h"
    if step >= 60 and seconds % 60 == 0:
        return f"t+{seconds / 60:.0f}m"
    return f"t+{seconds:.0f}s"


def _x_axis(chart: Chart, x0: float, x1: float, target: int) -> list[tuple[float, str]]:
    """(x, label) of the time axis ticks: wall clock for long analyses."""
    if chart.start is not None and x1 - x0 >= WALL_CLOCK_AFTER:
        origin = chart.start.astimezone(UTC)
        epoch = origin.timestamp()
        step, ticks = time_ticks(epoch + x0, epoch + x1, target)
        fmt = "%H:%M" if step >= 60 else "%H:%M:%S"
        labels = [(t - epoch, datetime.fromtimestamp(t, UTC).strftime(fmt)) for t in ticks]
        if labels:  # the first label says which clock
            labels[0] = (labels[0][0], labels[0][1] + " UTC")
        return labels
    step, ticks = time_ticks(x0, x1, target)
    return [(t, _time_label(t, step)) for t in ticks]


def _legend_rows(series: Sequence[Series], width: float) -> list[list[tuple[Series, float]]]:
    """Legend entries laid out in rows that fit `width` (x offset per entry)."""
    rows: list[list[tuple[Series, float]]] = [[]]
    x = 0.0
    for item in series:
        needed = 34 + 6.6 * len(item.name) + 14
        if rows[-1] and x + needed > width:
            rows.append([])
            x = 0.0
        rows[-1].append((item, x))
        x += needed
    return rows if rows[0] else []


def render(chart: Chart, width: int = WIDTH) -> str:
    """The chart as an <svg> element `width` units wide; each data point is a
    <circle class="point">. Narrow renderings get fewer ticks, same font size."""
    x0, x1 = chart.x_range
    if x1 <= x0:
        x1 = x0 + 1
    plot_w = width - LEFT - RIGHT
    x_target = max(3, min(6, plot_w // 90))
    legend = _legend_rows(chart.series, plot_w)
    top = 10 + LEGEND_ROW * len(legend) + 14  # legend rows, then room for marker labels
    height = top + PLOT_HEIGHT + BOTTOM
    ys = [y for s in chart.series for _, y in s.points if y is not None and math.isfinite(y)]
    ys += [t[0] for t in chart.thresholds]
    if chart.y_range is not None:
        y0, y1 = chart.y_range
        ticks = nice_ticks(y0, y1, 4)
        ticks = [t for t in ticks if y0 - 1e-9 <= t <= y1 + 1e-9]
    else:
        low, high = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if low == high:
            pad = abs(low) * 0.1 or 1.0
            low, high = low - pad, high + pad
        ticks = nice_ticks(low, high, 4)
        y0, y1 = ticks[0], ticks[-1]

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + (1 - (min(max(y, y0), y1) - y0) / (y1 - y0)) * PLOT_HEIGHT

    parts = [
        f'<svg class="{chart.css_class}{" narrow" if width < WIDTH else ""}" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg" font-family="system-ui,sans-serif">',
        f"<title>{escape(chart.title)}</title>",
        f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PLOT_HEIGHT}" fill="#fafafa" '
        'stroke="#d1d5db"/>',
    ]
    for value in ticks:  # y grid and labels
        y = py(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text class="y-tick" x="{LEFT - 6}" y="{y + 4:.1f}" font-size="12" '
            f'text-anchor="end" fill="#374151">{_fmt(value)}{escape(chart.y_unit)}</text>'
        )
    for x, label in _x_axis(chart, x0, x1, x_target):
        parts.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top + PLOT_HEIGHT}" '
            f'y2="{top + PLOT_HEIGHT + 4}" stroke="#9ca3af"/>'
            f'<text class="x-tick" x="{px(x):.1f}" y="{top + PLOT_HEIGHT + 18}" font-size="12" '
            f'text-anchor="middle" fill="#374151">{escape(label)}</text>'
        )
    mid = top + PLOT_HEIGHT / 2
    parts.append(
        f'<text x="14" y="{mid:.0f}" font-size="12" fill="#374151" '
        f'transform="rotate(-90 14 {mid:.0f})" text-anchor="middle">'
        f"{escape(chart.y_label)}</text>"
    )
    label_ys: list[float] = []
    for y, label, color in sorted(chart.thresholds, key=lambda t: -t[0]):
        label_y = py(y) + 4
        while any(abs(label_y - taken) < 13 for taken in label_ys):
            label_y += 13  # keep close thresholds' labels apart
        label_ys.append(label_y)
        parts.append(
            f'<line class="threshold" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(y):.1f}" '
            f'y2="{py(y):.1f}" stroke="{color}" stroke-dasharray="6 4"/>'
            f'<text x="{LEFT + plot_w + 4}" y="{label_y:.1f}" font-size="11" '
            f'fill="{color}">{escape(label)}</text>'
        )
    parts.extend(_markers(chart.markers, px, top, LEFT + plot_w))
    for series in chart.series:
        parts.extend(_series(series, px, py, y0, y1))
    for row_index, row in enumerate(legend):
        y = 10 + LEGEND_ROW * row_index + 8
        for series, offset in row:
            x = LEFT + offset
            dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
            parts.append(
                f'<g class="legend-entry" data-series="{escape(series.name)}">'
                f'<line x1="{x:.1f}" x2="{x + 28:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{series.color}" stroke-width="2.5"{dash}/>'
                f'<text x="{x + 34:.1f}" y="{y + 4:.1f}" font-size="12" fill="#111827">'
                f"{escape(series.name)}</text></g>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _markers(markers: Sequence[Marker], px, top: float, right: float) -> list[str]:  # type: ignore[no-untyped-def]
    parts = []
    placed: list[tuple[float, int]] = []
    for marker in sorted(markers, key=lambda m: (m.x, m.kind == "decision")):
        x = px(marker.x)
        width = 6.0 * len(marker.label) + 6
        level = 0
        while any(level == lv and abs(x - px_) < width for px_, lv in placed):
            level += 1
        placed.append((x, level))
        weight = "2.5" if marker.kind == "decision" else "1.5"
        label_y = top + 12 + 12 * level
        # near the right edge the label goes to the left of its line
        anchor, label_x = ("end", x - 3) if x + width > right else ("start", x + 3)
        parts.append(
            f'<g class="marker {escape(marker.kind)}">'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + PLOT_HEIGHT}" '
            f'stroke="{marker.color}" stroke-width="{weight}"/>'
            f'<text x="{label_x:.1f}" y="{label_y:.1f}" font-size="11" text-anchor="{anchor}" '
            f'fill="{marker.color}" stroke="#fff" stroke-width="3" paint-order="stroke">'
            f"{escape(marker.label)}</text></g>"
        )
    return parts


def _series(series: Series, px, py, y0: float, y1: float) -> list[str]:  # type: ignore[no-untyped-def]
    path: list[str] = []
    previous = None
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
    dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
    parts = [
        f'<path d="{" ".join(path)}" fill="none" stroke="{series.color}" stroke-width="2"{dash}/>'
    ]
    name = escape(series.name)
    for x, y in series.points:
        if y is None or not math.isfinite(y):
            continue
        cx, cy = px(x), py(y)
        if y > y1 or y < y0:  # off the fixed scale: a triangle at the edge, pointing out
            tip = cy - 6 if y > y1 else cy + 6
            parts.append(
                f'<path class="clipped" data-series="{name}" '
                f'd="M{cx - 5:.1f},{cy:.1f}L{cx + 5:.1f},{cy:.1f}L{cx:.1f},{tip:.1f}Z" '
                f'fill="{series.color}"><title>{name}: {_fmt(y)} (off the scale)</title></path>'
            )
            continue
        parts.append(
            f'<circle class="point" data-series="{name}" cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" '
            f'fill="{series.color}"><title>{name}: {_fmt(y)}</title></circle>'
        )
    return parts


def _fmt(value: float) -> str:
    """A tick or point value without float noise: 250, 2.5, 0.001, 1.2e+06."""
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.6g}"
