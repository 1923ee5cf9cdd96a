"""Figures of the equi-learning law: PR against depth per task, and law metrics against step.

matplotlib is imported inside the functions (and drives the Agg canvas directly, never pyplot),
so importing this module stays cheap and never touches a display or global backend state.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nextlaw_task.reports.measurement import run_suffixes
from nextlaw_task.reports.results import NextlawRow

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Output formats, chosen by the suffix of the output file.
FORMATS: tuple[str, ...] = ("png", "svg")
#: Figure sizes in inches; at DPI dots per inch a PNG is 800x500 (report; 600 wider per panel
#: beyond one when rows of several quantities share a figure) or 1000x750 (sweep).
REPORT_SIZE: tuple[float, float] = (8.0, 5.0)
SWEEP_SIZE: tuple[float, float] = (10.0, 7.5)
DPI = 100
#: y-axis label of each per-layer quantity's panel
_QUANTITY_LABELS = {"pr": "prediction residual PR_l (1 - R²)", "fuzziness": "separation fuzziness"}


class PlotFormatError(ValueError):
    """An output file whose suffix is not a supported image format."""


def image_format(path: Path | str) -> str:
    """``png`` or ``svg`` from the file suffix; PlotFormatError otherwise."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise PlotFormatError(f"{path}: plot file must end in .png or .svg")
    return fmt


def law_figure(rows: Sequence[NextlawRow]) -> Figure:
    """log PR_l against l for every row, each with its fitted law line (rho and r in legend).

    One panel per quantity (PR, fuzziness), side by side: measures of different scales never share
    a log axis. A row that shares its model and task with another is named with what sets it apart.
    """
    quantities = list(dict.fromkeys(row.quantity for row in rows)) or ["pr"]
    width = REPORT_SIZE[0] if len(quantities) == 1 else 6.0 * len(quantities)
    fig = _new_figure((width, REPORT_SIZE[1]))
    axes = fig.subplots(1, len(quantities), squeeze=False)[0]
    several_models = len({row.model_label for row in rows}) > 1
    suffixes = run_suffixes(rows)
    for ax, quantity in zip(axes, quantities):
        for row, suffix in zip(rows, suffixes):
            if row.quantity != quantity:
                continue
            name = f"{row.model_label} · {row.task}" if several_models else row.task
            _draw_law(ax, row, f"{name} [{suffix}]" if suffix else name)
        ax.set_yscale("log")
        ax.set_xlabel("hidden state l (0 = embeddings)")
        ax.set_ylabel(_QUANTITY_LABELS.get(quantity, quantity))
        ax.xaxis.get_major_locator().set_params(integer=True)
        title = rows[0].model_label if rows and not several_models else "equi-learning law"
        ax.set_title(title if len(quantities) == 1 else f"{title}: {quantity}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def sweep_figure(points: Sequence[tuple[int, NextlawRow]]) -> Figure:
    """Law metrics against training step, per task, plus the PR curves of the first task."""
    fig = _new_figure(SWEEP_SIZE)
    axes = fig.subplots(2, 2)
    tasks = sorted({row.task for _, row in points})
    first = sorted((p for p in points if p[1].task == tasks[0]), key=lambda p: p[0]) if tasks else []
    _draw_pr_curves(axes[0][0], first)
    panels = (
        (axes[0][1], ("law_pearson_r", "law_r2"), "Pearson r / R² of the law fit"),
        (axes[1][0], ("law_rho",), "rho"),
        (axes[1][1], ("equilearning_deviation",), "equi-learning deviation"),
    )
    for ax, metrics, title in panels:
        for task in tasks:
            series = sorted((step, row) for step, row in points if row.task == task)
            for metric in metrics:
                label = metric if len(tasks) == 1 else f"{task} {metric}"
                ax.plot(
                    [step for step, _ in series],
                    [getattr(row, metric) for _, row in series],
                    marker="o",
                    label=label,
                )
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("training step")
        values = [getattr(row, m) for _, row in points for m in metrics]
        if metrics == ("equilearning_deviation",) and all(v > 0 for v in values if math.isfinite(v)):
            ax.set_yscale("log")  # a ratio that spans decades when the fitted drop is near 0
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(True, alpha=0.3)
        if len(metrics) > 1 or len(tasks) > 1:
            ax.legend(fontsize="small")
    return fig


def save_figure(fig: Figure, output: Path | str) -> Path:
    """Write the figure as PNG or SVG, by the suffix of ``output``."""
    output = Path(output)
    fmt = image_format(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, format=fmt, dpi=DPI)
    return output


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure encoded as ``png`` or ``svg``, for embedding in a page."""
    if fmt not in FORMATS:
        raise PlotFormatError(f"unsupported plot format {fmt!r}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=DPI)
    return buffer.getvalue()


def _new_figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _positive(row: NextlawRow, states: Sequence[int]) -> tuple[list[int], list[float]]:
    """The (state, PR) pairs that a log axis can show."""
    pairs = [(s, row.layers[s]) for s in states if math.isfinite(row.layers[s]) and row.layers[s] > 0]
    return [s for s, _ in pairs], [v for _, v in pairs]


def _draw_law(ax: Axes, row: NextlawRow, name: str) -> None:
    xs, ys = _positive(row, row.states)
    (line,) = ax.plot(xs, ys, marker="o", label=name)
    fit = row.fit_states
    if fit and math.isfinite(row.law_slope) and math.isfinite(row.law_intercept):
        ax.plot(
            fit,
            [10 ** (row.law_intercept + row.law_slope * s) for s in fit],
            linestyle="--",
            color=line.get_color(),
            label=f"{name} fit: ρ={row.law_rho:.4g}, r={row.law_pearson_r:.4g}",
        )


def _draw_pr_curves(ax: Axes, series: Sequence[tuple[int, NextlawRow]]) -> None:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for i, (step, row) in enumerate(series):
        xs, ys = _positive(row, row.states)
        ax.plot(xs, ys, marker=".", color=cmap(0.85 * i / max(1, len(series) - 1)), label=f"step {step}")
    ax.set_yscale("log")
    ax.set_title(f"PR_l by checkpoint ({series[0][1].task})" if series else "PR_l", fontsize="medium")
    ax.set_xlabel("hidden state l")
    ax.set_ylabel("PR_l")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize="x-small", ncol=2)
