"""An inline SVG chart comparing models: log10(PR_l / PR_1) against relative depth l / L.

Dividing by PR_1 and plotting against l / L puts models of any depth and any PR level on one
scale: every curve starts at 0 near the bottom of the network, and its slope is the law's per-layer
decay stretched to the model's depth. States 1..L are drawn (the law's range; the embeddings,
state 0, are left out); L is the deepest state measured.

Error band (±2 SE, about 95%): by the delta method, y_l = log10 PR_l - log10 PR_1 has
SE(y_l) ≈ sqrt((SE_l / PR_l)² + (SE_1 / PR_1)²) / ln 10, taking PR_l and PR_1 as independent. That is a
first-order approximation; both are measured on the same tokens and usually positively correlated,
which makes the band wider than the truth. y_1 = 0 exactly. A state without an SE (or a row without
SE_1) gets no band; the band is drawn over runs of consecutive states that all have one.

Self-contained SVG: each model is a ``<g class="series">`` with an SVG ``<title>`` (the full model
name, shown on hover), a ``path.line`` and ``path.band``s, and one ``circle`` per state carrying
its state and value in ``data-state`` / ``data-y``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from nextlaw_task.reports.results import NextlawRow

#: Colours of successive models (matplotlib's tab10, so page and figures agree).
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
#: Band half-width in standard errors.
BAND_SES = 2.0
WIDTH, HEIGHT = 900, 380
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 48
#: The plotting area in data coordinates: (x low, x high, y low, y high).
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Point:
    """One state of a series: its index, relative depth x = l / L, y = log10(PR_l / PR_1) and SE(y)."""

    state: int
    x: float
    y: float
    se: float


@dataclass(frozen=True)
class Series:
    """One row's curve: short label, hover title, the full model label, colour and points."""

    label: str
    title: str
    model: str
    color: str
    points: tuple[Point, ...]


def relative_points(row: NextlawRow) -> tuple[Point, ...]:
    """States 1..L of a row as chart points; none when PR_1 is missing, zero or NaN."""
    first, first_se = row.pr_first, row.pr_first_stderr
    last = row.last_state
    if not (math.isfinite(first) and first > 0 and last >= 1):
        return ()
    points = []
    for state in row.states:
        value = row.layers[state]
        if state < 1 or not (math.isfinite(value) and value > 0):
            continue
        se = row.layer_stderr.get(state, math.nan)
        spread = 0.0 if state == 1 else math.hypot(se / value, first_se / first) / math.log(10)
        spread = spread if math.isfinite(first_se) else math.nan
        points.append(Point(state, state / last, math.log10(value / first), spread))
    return tuple(points)


def svg_chart(series: Sequence[Series], title: str, ylabel: str) -> str:
    """The chart as an inline ``<svg>`` element (no external reference)."""
    xs = [0.0, 1.0]
    ys = [p.y + sign * BAND_SES * (p.se if math.isfinite(p.se) else 0.0)
          for one in series for p in one.points for sign in (-1, 1)]  # fmt: skip
    y_ticks = nice_ticks(min(ys, default=-1.0), max(ys, default=0.0))
    box = (xs[0], xs[1], y_ticks[0], y_ticks[-1])
    esc = html.escape
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{esc(title)}"><title>{esc(title)}</title>',
        _axes(box, [0.0, 0.25, 0.5, 0.75, 1.0], y_ticks, ylabel),
    ]
    for one in series:
        parts.append(_series(one, box))
    parts.append("</svg>")
    return "\n".join(parts)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = -1.0, 0.0
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < high - 1e-9 * step:
        ticks.append(first + len(ticks) * step)
    return [round(t, 12) for t in ticks]


def _project(box: Box, x: float, y: float) -> tuple[float, float]:
    """Data coordinates to SVG pixels."""
    x0, x1, y0, y1 = box
    px = _LEFT + (x - x0) / (x1 - x0) * (WIDTH - _LEFT - _RIGHT)
    py = HEIGHT - _BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - _TOP - _BOTTOM)
    return round(px, 2), round(py, 2)


def _axes(box: Box, x_ticks: Sequence[float], y_ticks: Sequence[float], ylabel: str) -> str:
    left, bottom = _project(box, box[0], box[2])
    right, top = _project(box, box[1], box[3])
    parts = ['<g class="axes" font-size="12" fill="#333">']
    for x in x_ticks:
        px, _ = _project(box, x, box[2])
        parts.append(f'<line x1="{px}" y1="{top}" x2="{px}" y2="{bottom}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{px}" y="{bottom + 18}" text-anchor="middle">{x:g}</text>')
    for y in y_ticks:
        _, py = _project(box, box[0], y)
        parts.append(f'<line x1="{left}" y1="{py}" x2="{right}" y2="{py}" stroke="#e4e4e4"/>')
        parts.append(f'<text x="{left - 6}" y="{py + 4}" text-anchor="end">{y:g}</text>')
    frame = f'width="{right - left}" height="{bottom - top}"'
    parts.append(f'<rect x="{left}" y="{top}" {frame} fill="none" stroke="#999"/>')
    parts.append(f'<text x="{(left + right) / 2}" y="{HEIGHT - 8}" text-anchor="middle">relative depth l / L</text>')
    middle = (top + bottom) / 2
    turn = f'transform="rotate(-90 14 {middle})"'
    parts.append(f'<text x="14" y="{middle}" text-anchor="middle" {turn}>{html.escape(ylabel)}</text>')
    parts.append("</g>")
    return "\n".join(parts)


def _series(one: Series, box: Box) -> str:
    esc = html.escape
    color = esc(one.color)
    parts = [f'<g class="series" data-model="{esc(one.model)}"><title>{esc(one.title)}</title>']
    for run in _runs_with_se(one.points):
        upper = [_project(box, p.x, p.y + BAND_SES * p.se) for p in run]
        lower = [_project(box, p.x, p.y - BAND_SES * p.se) for p in reversed(run)]
        outline = _path(upper + lower)
        parts.append(f'<path class="band" d="{outline} Z" fill="{color}" fill-opacity="0.18" stroke="none"/>')
    pixels = [_project(box, p.x, p.y) for p in one.points]
    if pixels:
        parts.append(f'<path class="line" d="{_path(pixels)}" fill="none" stroke="{color}" stroke-width="2"/>')
    for p, (px, py) in zip(one.points, pixels):
        spread = f" ± {BAND_SES * p.se:.3g}" if math.isfinite(p.se) else ""
        hover = f"{esc(one.label)}: l = {p.state}, l/L = {p.x:.3g}, log ratio = {p.y:.4g}{spread}"
        parts.append(
            f'<circle cx="{px}" cy="{py}" r="2.5" fill="{color}" data-state="{p.state}" data-y="{p.y!r}">'
            f"<title>{hover}</title></circle>"
        )
    parts.append("</g>")
    return "\n".join(parts)


def _runs_with_se(points: Sequence[Point]) -> list[list[Point]]:
    """Maximal runs of consecutive points that all have an SE, at least two points long."""
    runs: list[list[Point]] = [[]]
    for p in points:
        if math.isfinite(p.se):
            runs[-1].append(p)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if len(run) >= 2]


def _path(pixels: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{x},{y}" for i, (x, y) in enumerate(pixels))
