"""The leaderboard's columns and its ranking within each task: order, leader and ties.

See :mod:`nextlaw_task.reports.leaderboard` for the rules; this module holds them as code so the
markdown, CSV, JSON and HTML outputs share one ranking.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nextlaw_task.reports.measurement import options_differ, options_text, varying_options
from nextlaw_task.reports.results import NextlawRow

DEFAULT_SORT = "law_pearson_r"
#: Columns whose values are text: sorted as text, never ranked with a leader.
TEXT_KEYS: tuple[str, ...] = ("model", "task", "corpus", "options")
#: The tie rule's width: a row ties the leader within this many SEs of the difference.
TIE_SES = 2.0
LEADER, TIE = "leader", "tie"


class LeaderboardError(ValueError):
    """An unknown sort key or output format."""


@dataclass(frozen=True)
class Column:
    """A leaderboard column: machine key (CSV/JSON name, sort key), display title, value getter.

    The getter returns None where a row has no such value (a benchmark that model was not run on).
    ``stderr`` gives the value's standard error (NaN where the file has none); None for columns
    that never have one. ``shown``: in the markdown and HTML tables (every column is exported).
    """

    key: str
    title: str
    value: Callable[[NextlawRow], str | float | None]
    stderr: Callable[[NextlawRow], float] | None = None
    shown: bool = True

    @property
    def numeric(self) -> bool:
        return self.key not in TEXT_KEYS


def _law(key: str, title: str, shown: bool = True) -> Column:
    return Column(key, title, lambda r: getattr(r, key), lambda r: r.se(key), shown)


BASE_COLUMNS: tuple[Column, ...] = (
    Column("model", "model", lambda r: r.model_label),
    Column("task", "task", lambda r: r.task),
    Column("corpus", "corpus", lambda r: r.measurement.corpus_label),
    Column("n_docs", "docs", lambda r: r.n_docs),
    Column("layers", "layers", lambda r: float(r.last_state)),
    Column("hidden_size", "hidden", lambda r: r.hidden_size),
    _law("law_slope", "slope", shown=False),
    _law("law_intercept", "intercept", shown=False),
    _law("law_rho", "rho"),
    _law("law_pearson_r", "r"),
    _law("law_r2", "R²"),
    _law("pr_ratio_last_first", "PR_L/PR_1", shown=False),
    Column("pr_first", "PR_1", lambda r: r.pr_first, lambda r: r.pr_first_stderr),
    Column("pr_last", "PR_L", lambda r: r.pr_last, lambda r: r.pr_last_stderr),
    _law("equilearning_deviation", "deviation"),
    Column("n_tokens", "tokens", lambda r: r.n_tokens),
)


@dataclass(frozen=True)
class Ranked:
    """A row in its task's order: 1-based rank, and ``leader``, ``tie`` or ``""``."""

    row: NextlawRow
    rank: int
    mark: str


def columns(rows: Sequence[NextlawRow]) -> list[Column]:
    """The base columns, ``options`` where the rows' options differ, one per benchmark score (``task/metric``).

    The ``options`` column shows the options that differ between rows that recorded all of them,
    and for an older file the options its run was given (``not recorded`` where none).
    """
    varying = varying_options(rows)
    options = [Column("options", "options", lambda r: options_text(r.measurement, varying))]
    scores = sorted({name for row in rows for name in row.benchmarks})
    extra = [
        Column(name, name, lambda r, n=name: r.benchmarks.get(n), lambda r, n=name: r.benchmark_stderr.get(n, math.nan))
        for name in scores
    ]
    return [*BASE_COLUMNS[:3], *(options if options_differ(rows) else []), *BASE_COLUMNS[3:], *extra]


def task_title(col: Column, quantity: str) -> str:
    """A column's title in a task's table: ``PR_1``/``PR_L`` name the task's own per-layer quantity."""
    if quantity != "pr" and col.key in ("pr_first", "pr_last"):
        return f"{quantity}_{col.title.rsplit('_', 1)[1]}"
    return col.title


def column(rows: Sequence[NextlawRow], key: str) -> Column:
    """The column of a sort key; LeaderboardError naming the known keys otherwise."""
    by_key = {c.key: c for c in columns(rows)}
    if key not in by_key:
        raise LeaderboardError(f"unknown sort key {key!r}; choose one of: {', '.join(by_key)}")
    return by_key[key]


def table_columns(entries: Sequence[Ranked]) -> list[Column]:
    """The columns one task's table shows: :func:`columns` of its own rows (so ``options`` appears
    only when they differ within the task), those ``shown``, ``task`` left to the heading."""
    return [c for c in columns([entry.row for entry in entries]) if c.shown and c.key != "task"]


def rank(rows: Sequence[NextlawRow], key: str = DEFAULT_SORT, descending: bool = False) -> dict[str, list[Ranked]]:
    """Each task's rows (tasks in name order) ordered by ``key``, NaN/missing last, leader and ties marked."""
    board = column(rows, key)
    ranked: dict[str, list[Ranked]] = {}
    for task in sorted({row.task for row in rows}):
        mine = [row for row in rows if row.task == task]
        col = next((c for c in columns(mine) if c.key == key), board)
        ordered = _ordered(mine, col, descending)
        marks = _marks(ordered, col)
        ranked[task] = [Ranked(row, i, mark) for i, (row, mark) in enumerate(zip(ordered, marks), 1)]
    return ranked


def sort_rows(rows: Sequence[NextlawRow], key: str = DEFAULT_SORT, descending: bool = False) -> list[NextlawRow]:
    """All rows, task by task (in name order), each task's rows ordered as :func:`rank` orders them."""
    return [entry.row for entries in rank(rows, key, descending).values() for entry in entries]


def within_two_se(a: float, se_a: float, b: float, se_b: float) -> bool:
    """The tie rule: ``|a - b| <= 2 * sqrt(se_a² + se_b²)``; False when any of the four is not finite."""
    if not all(math.isfinite(v) for v in (a, se_a, b, se_b)):
        return False
    return abs(a - b) <= TIE_SES * math.hypot(se_a, se_b)


def missing(value: str | float | None) -> bool:
    """No value: absent (None) or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ordered(rows: Sequence[NextlawRow], col: Column, descending: bool) -> list[NextlawRow]:
    """Rows by the column's value; equal and missing values in (model, corpus) order."""
    rows = sorted(rows, key=lambda r: (r.model_label, r.measurement.corpus_label))
    present = [r for r in rows if not missing(col.value(r))]
    absent = [r for r in rows if missing(col.value(r))]
    return sorted(present, key=col.value, reverse=descending) + absent


def _marks(ordered: Sequence[NextlawRow], col: Column) -> list[str]:
    """``leader`` for the first row of a numeric key, ``tie`` for rows within 2 SE of it, else ``""``."""
    marks = [""] * len(ordered)
    if not ordered or not col.numeric or missing(col.value(ordered[0])):
        return marks
    lead = ordered[0]
    marks[0] = LEADER
    if col.stderr is None:
        return marks
    a, se_a = float(col.value(lead)), col.stderr(lead)  # type: ignore[arg-type]
    for i, row in enumerate(ordered[1:], 1):
        b = col.value(row)
        if not missing(b) and within_two_se(a, se_a, float(b), col.stderr(row)):  # type: ignore[arg-type]
            marks[i] = TIE
    return marks
