"""Markdown report of a results file: the per-state PR series and the law fit of each task."""

from __future__ import annotations

import math
from collections.abc import Sequence

from nextlaw_task.reports.measurement import run_suffixes
from nextlaw_task.reports.results import NextlawRow, format_number

#: (column title, NextlawRow attribute) of the law table.
LAW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("slope", "law_slope"),
    ("intercept", "law_intercept"),
    ("rho", "law_rho"),
    ("r", "law_pearson_r"),
    ("R²", "law_r2"),
    ("PR_L/PR_1", "pr_ratio_last_first"),
    ("deviation", "equilearning_deviation"),
    ("tokens", "n_tokens"),
    ("docs", "n_docs"),
    ("hidden", "hidden_size"),
)
#: the column that names the states each law was fitted over
STATES_COLUMN = "fitted over states"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    """A GitHub markdown table; numeric columns are right-aligned, ``|`` in cells escaped."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rule = "|" + "|".join("---:" if right else "---" for right in numeric) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def markdown_report(rows: Sequence[NextlawRow]) -> str:
    """One section per model: a PR table (states x tasks) and a law table (tasks x metrics).

    A task measured in several runs of the model (other corpus, counts or options) appears once
    per run, its name followed by what sets the run apart, e.g. ``nextlaw_equilearning [austen.jsonl]``.
    """
    sections = []
    for model in dict.fromkeys(row.model_label for row in rows):
        mine = [row for row in rows if row.model_label == model]
        sections.append(f"## {model}\n\n{_pr_table(mine)}\n\n{_law_table(mine)}\n")
    return "\n".join(sections)


def _run_names(rows: Sequence[NextlawRow]) -> list[str]:
    """Each row's task, with what sets it apart from the model's other runs of that task."""
    return [f"{row.task} [{suffix}]" if suffix else row.task for row, suffix in zip(rows, run_suffixes(rows))]


def _pr_table(rows: Sequence[NextlawRow]) -> str:
    states = sorted({s for row in rows for s in row.states})
    body = [
        [str(s), *(format_number(row.layers.get(s, math.nan)) for row in rows)] for s in states
    ]
    table = markdown_table(["state", *_run_names(rows)], body, [True] * (len(rows) + 1))
    return f"### Prediction residual PR_l per hidden state\n\n{table}"


def _law_table(rows: Sequence[NextlawRow]) -> str:
    body = [
        [name, row.law_states_label, *(format_number(getattr(row, attr)) for _, attr in LAW_COLUMNS)]
        for row, name in zip(rows, _run_names(rows))
    ]
    header = ["task", STATES_COLUMN, *(title for title, _ in LAW_COLUMNS)]
    table = markdown_table(header, body, [False, False] + [True] * len(LAW_COLUMNS))
    notes = [f"{row.task}: states {', '.join(map(str, row.ill_posed))} are not results (NaN), left out of the law"
             for row in rows if row.ill_posed]
    return "\n\n".join(["### Law fit: log10 PR_l = intercept + slope · l", table, *notes])
