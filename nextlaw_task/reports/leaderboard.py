"""Leaderboard: one row per (model, task) with the law's quality and the benchmark scores.

Rows are sorted by ``law_pearson_r`` ascending by default: the most negative r first, i.e. the
models whose log PR falls most linearly with depth (the cleanest equi-learning law) lead. NaN and
missing values always sort last, in either direction.

Formats: ``md`` (numbers to 6 significant digits), ``csv`` (numbers exactly as read, shortest
round-trip repr), ``html`` (one self-contained page: inline CSS, a small inline script that sorts
the table when a header is clicked, and one base64 PNG law figure per model; no external URL).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nextlaw_task.reports.plot import figure_bytes, law_figure
from nextlaw_task.reports.report import markdown_table
from nextlaw_task.reports.results import NextlawRow, format_number

FORMATS: tuple[str, ...] = ("md", "csv", "html")
DEFAULT_SORT = "law_pearson_r"


class LeaderboardError(ValueError):
    """An unknown sort key or output format."""


@dataclass(frozen=True)
class Column:
    """A leaderboard column: machine key (CSV header, sort key), display title, value getter.

    The getter returns None where a row has no such value (a benchmark that model was not run on).
    """

    key: str
    title: str
    value: Callable[[NextlawRow], str | float | None]

    @property
    def numeric(self) -> bool:
        return self.key not in ("model", "task")


BASE_COLUMNS: tuple[Column, ...] = (
    Column("model", "model", lambda r: r.model_label),
    Column("task", "task", lambda r: r.task),
    Column("layers", "layers", lambda r: float(r.last_state)),
    Column("hidden_size", "hidden", lambda r: r.hidden_size),
    Column("law_rho", "rho", lambda r: r.law_rho),
    Column("law_pearson_r", "r", lambda r: r.law_pearson_r),
    Column("law_r2", "R²", lambda r: r.law_r2),
    Column("pr_first", "PR_1", lambda r: r.pr_first),
    Column("pr_last", "PR_L", lambda r: r.pr_last),
    Column("equilearning_deviation", "deviation", lambda r: r.equilearning_deviation),
    Column("n_tokens", "tokens", lambda r: r.n_tokens),
)


def columns(rows: Sequence[NextlawRow]) -> list[Column]:
    """The base columns, then one per benchmark score found in any row (``task/metric``)."""
    scores = sorted({name for row in rows for name in row.benchmarks})
    extra = [Column(name, name, lambda r, n=name: r.benchmarks.get(n)) for name in scores]
    return [*BASE_COLUMNS, *extra]


def sort_rows(rows: Sequence[NextlawRow], key: str = DEFAULT_SORT, descending: bool = False) -> list[NextlawRow]:
    """Rows ordered by a column key; NaN/missing last; ties keep (model, task) order."""
    by_key = {column.key: column for column in columns(rows)}
    if key not in by_key:
        raise LeaderboardError(f"unknown sort key {key!r}; choose one of: {', '.join(by_key)}")
    column = by_key[key]
    ordered = sorted(rows, key=lambda r: (r.model_label, r.task))
    present = [r for r in ordered if not _missing(column.value(r))]
    absent = [r for r in ordered if _missing(column.value(r))]
    return sorted(present, key=column.value, reverse=descending) + absent


def render(rows: Sequence[NextlawRow], fmt: str = "md", sort: str = DEFAULT_SORT, descending: bool = False) -> str:
    """The leaderboard as markdown, CSV or an HTML page."""
    if fmt not in FORMATS:
        raise LeaderboardError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    ordered = sort_rows(rows, sort, descending)
    cols = columns(ordered)
    if fmt == "md":
        return _markdown(ordered, cols)
    if fmt == "csv":
        return _csv(ordered, cols)
    return _html(ordered, cols, sort, descending)


def _missing(value: str | float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(value: str | float | None) -> str:
    """Display text: blank when absent, ``nan`` when measured as NaN."""
    if value is None:
        return ""
    return value if isinstance(value, str) else format_number(value)


def _markdown(rows: Sequence[NextlawRow], cols: Sequence[Column]) -> str:
    body = [[_cell(c.value(row)) for c in cols] for row in rows]
    return markdown_table([c.title for c in cols], body, [c.numeric for c in cols]) + "\n"


def _csv(rows: Sequence[NextlawRow], cols: Sequence[Column]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in cols])
    for row in rows:
        writer.writerow([_exact(c.value(row)) for c in cols])
    return out.getvalue()


def _exact(value: str | float | None) -> str:
    """Text that reads back as exactly the same value (blank when absent)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else repr(value)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1b1b1b; background: #fff; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; }
th { background: #f0f0f0; }
table.sortable th { cursor: pointer; user-select: none; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 2rem 0; }
img { max-width: 100%; height: auto; }
.scroll { overflow-x: auto; }
"""

_SORT_SCRIPT = """
(function () {
  function key(cell) {
    if (!cell.hasAttribute("data-value")) {
      return { text: cell.textContent, blank: false };
    }
    var num = parseFloat(cell.getAttribute("data-value"));
    return { num: num, blank: isNaN(num) };
  }
  function compare(a, b) {
    if (a.blank !== b.blank) { return a.blank ? 1 : -1; }
    if (a.text !== undefined) { return a.text.localeCompare(b.text); }
    return a.blank ? 0 : a.num - b.num;
  }
  var table = document.getElementById("leaderboard");
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (th, col) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (x, y) {
        var a = key(x.cells[col]), b = key(y.cells[col]);
        if (a.blank || b.blank) { return compare(a, b); }
        return ascending ? compare(a, b) : compare(b, a);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  table.classList.add("sortable");
})();
"""


def _html(rows: Sequence[NextlawRow], cols: Sequence[Column], sort: str, descending: bool) -> str:
    esc = html.escape
    head = "".join(f'<th scope="col" title="{esc(c.key)}">{esc(c.title)}</th>' for c in cols)
    body = []
    for row in rows:
        cells = []
        for c in cols:
            value = c.value(row)
            attrs = "" if isinstance(value, str) else f' class="num" data-value="{_exact(value)}"'
            cells.append(f"<td{attrs}>{esc(_cell(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    order = "descending" if descending else "ascending"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nextlaw leaderboard</title>
<style>{_CSS}</style>
</head>
<body>
<h1>nextlaw leaderboard</h1>
<p>One row per (model, task), sorted by <code>{esc(sort)}</code> ({order}); click a header to
re-sort. r is the Pearson correlation of log10 PR_l with depth l over states 1..L (closer to -1:
a cleaner equi-learning law); rho is the law's per-layer ratio.</p>
<div class="scroll">
<table id="leaderboard">
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
</div>
{_figures(rows)}
<script>{_SORT_SCRIPT}</script>
</body>
</html>
"""


def _figures(rows: Sequence[NextlawRow]) -> str:
    """One embedded PNG per model: its tasks' PR curves and fitted laws."""
    parts = []
    for model in dict.fromkeys(row.model_label for row in rows):
        fig = law_figure([row for row in rows if row.model_label == model])
        data = base64.b64encode(figure_bytes(fig, "png")).decode("ascii")
        label = html.escape(model)
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="PR per hidden state, {label}">'
            f"<figcaption>{label}</figcaption></figure>"
        )
    return "\n".join(parts)
