"""Leaderboard: the law's quality and the benchmark scores of each model, ranked within each task.

Rows never mix runs: a row is one (model, revision, task, measurement), the measurement being the
corpus (sha256, else location), the documents and tokens measured and the ``nextlaw_*`` options
(see :mod:`nextlaw_task.reports.results`); the ``corpus`` column names the corpus
(``austen_sentences.jsonl@1a2b3c4d``: file name or Hub id, ``@`` the sha256's first 8 digits) and
an ``options`` column appears when the rows' options differ. A benchmark score is on a row only
when it comes from the same results file (the same run) or from a file named with ``--benchmarks``.

Ranking: models are ranked within each task, never across tasks (one table per task). Rows are
sorted by ``law_pearson_r`` ascending by default: the most negative r first, i.e. the models whose
log PR falls most linearly with depth (the cleanest equi-learning law) lead. NaN and missing
values always sort last, in either direction.

Leader and ties: on a numeric sort key, each task's first row is its leader (★; CSS class
``leader``). A row whose value b differs from the leader's a by at most two standard errors of the
difference, ``|a - b| <= 2 * sqrt(SE_a² + SE_b²)``, is a tie (≈; CSS class ``tie``): the data do
not tell the two apart at about 95% confidence. Where either SE is missing (an old results file,
SEs turned off, a column without SEs such as ``layers``) no tie is marked. The marks belong to
the sort key the board was rendered with; re-sorting the HTML table by a click does not move them.

Formats: ``md`` (values to 6 significant digits, ``value ± SE`` with the SE to 2, blank SE where
there is none), ``csv`` and ``json`` (every column, its SE in ``<key>_stderr`` beside it, and the
measurement: ``corpus``, ``corpus_sha256``, ``n_docs``, ``n_tokens``, ``options``; CSV numbers
exactly as read (shortest round-trip repr, blank where absent, options as JSON text), JSON numbers
as numbers and NaN as null), ``html`` (see :mod:`nextlaw_task.reports.page`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from nextlaw_task.reports.ranking import (
    BASE_COLUMNS,
    DEFAULT_SORT,
    LEADER,
    TIE,
    Column,
    LeaderboardError,
    Ranked,
    columns,
    missing,
    rank,
    sort_rows,
    table_columns,
    task_title,
    within_two_se,
)
from nextlaw_task.reports.report import markdown_table
from nextlaw_task.reports.results import NextlawRow, format_number

__all__ = [
    "BASE_COLUMNS",
    "DEFAULT_SORT",
    "FORMATS",
    "MARKS",
    "Column",
    "LeaderboardError",
    "Ranked",
    "columns",
    "rank",
    "records",
    "render",
    "sort_rows",
    "value_text",
    "within_two_se",
]

FORMATS: tuple[str, ...] = ("md", "csv", "json", "html")
#: How the markdown table shows a row's mark.
MARKS: Mapping[str, str] = {LEADER: "★", TIE: "≈", "": ""}


def render(rows: Sequence[NextlawRow], fmt: str = "md", sort: str = DEFAULT_SORT, descending: bool = False) -> str:
    """The leaderboard as markdown, CSV, JSON or an HTML page."""
    if fmt not in FORMATS:
        raise LeaderboardError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    ranked = rank(rows, sort, descending)
    cols = columns(rows)
    if fmt == "md":
        return _markdown(ranked, sort, descending)
    if fmt == "csv":
        return _csv(records(ranked, cols))
    if fmt == "json":
        return json.dumps(_strict(records(ranked, cols)), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    from nextlaw_task.reports.page import html_page

    return html_page(ranked, cols, sort, descending)


def records(ranked: Mapping[str, Sequence[Ranked]], cols: Sequence[Column]) -> list[dict[str, Any]]:
    """One dict per row, task by task in rank order: identity, measurement, each value and its SE."""
    out = []
    for entries in ranked.values():
        for entry in entries:
            row, measurement = entry.row, entry.row.measurement
            record: dict[str, Any] = {
                "model": row.model, "revision": row.revision, "task": row.task, "rank": entry.rank,
                "mark": entry.mark, "corpus": measurement.corpus, "corpus_sha256": measurement.corpus_sha256,
                "n_docs": row.n_docs, "n_tokens": row.n_tokens, "options": dict(measurement.options),
            }  # fmt: skip
            for col in cols:
                if col.numeric and col.key not in record:
                    record[col.key] = col.value(row)
                    if col.stderr is not None:
                        record[f"{col.key}_stderr"] = col.stderr(row)
            record["source"] = str(row.source)
            out.append(record)
    return out


def value_text(value: str | float | None, se: float = math.nan, digits: int = 6) -> str:
    """Display text: blank when absent, ``nan`` when measured as NaN, ``value ± SE`` where there is an SE."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    text = format_number(value, digits)
    return f"{text} ± {format_number(se, 2)}" if math.isfinite(se) and not math.isnan(value) else text


def _markdown(ranked: Mapping[str, Sequence[Ranked]], sort: str, descending: bool) -> str:
    sections = []
    for task, entries in ranked.items():
        shown = table_columns(entries)
        body = [
            [f"{e.rank} {MARKS[e.mark]}".rstrip(), *(_md_cell(c, e.row) for c in shown)] for e in entries
        ]
        titles = [task_title(c, entries[0].row.quantity) for c in shown]
        table = markdown_table(["rank", *titles], body, [True, *(c.numeric for c in shown)])
        sections.append(f"## {task}\n\n{table}\n")
    order = "descending" if descending else "ascending"
    legend = (
        f"★ leads its task on `{sort}` ({order}); ≈ is within 2 SE of the leader, "
        "|a - b| <= 2·sqrt(SE_a² + SE_b²) (no ≈ where an SE is missing). Values are shown as value ± SE."
    )
    return "\n".join(sections) + f"\n{legend}\n"


def _md_cell(col: Column, row: NextlawRow) -> str:
    return value_text(col.value(row), col.stderr(row) if col.stderr else math.nan)


def _csv(table: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    keys = list(table[0]) if table else []
    writer.writerow(keys)
    for record in table:
        writer.writerow([_exact(key, record[key]) for key in keys])
    return out.getvalue()


def _exact(key: str, value: Any) -> str:
    """CSV text that reads back as exactly the same value: blank when absent (or a missing SE)."""
    if value is None or (key.endswith("_stderr") and missing(value)):
        return ""
    if key == "options":
        return json.dumps(value, sort_keys=True, default=str)
    return value if isinstance(value, str) else repr(value)


def _strict(value: Any) -> Any:
    """JSON-ready: NaN and infinities as None, mappings and lists walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value
