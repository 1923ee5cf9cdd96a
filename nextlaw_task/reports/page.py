"""The leaderboard as one self-contained HTML page (inline CSS, script and images; no external URL).

Per task: a heading, its table (click a header to re-sort; the leader ★ and ties ≈ follow the
rules in :mod:`nextlaw_task.reports.leaderboard`; numbers show ``value ± SE`` rounded to the SE's
second significant digit, the exact value in ``data-value``), and an inline SVG chart of every
model's log10(PR_l / PR_1) against relative depth (see :mod:`nextlaw_task.reports.chart`), so tasks
of different quantities (PR, fuzziness) never share an axis. Then one PNG law figure per model,
each quantity on its own panel. Models are shown by short labels (folder name or Hub id); the full
name is in each label's ``title`` (shown on hover).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence

from nextlaw_task.reports.chart import PALETTE, Series, relative_points, svg_chart
from nextlaw_task.reports.measurement import run_suffixes, short_labels
from nextlaw_task.reports.plot import figure_bytes, law_figure
from nextlaw_task.reports.ranking import LEADER, TIE, Column, Ranked, table_columns, task_title
from nextlaw_task.reports.results import NextlawRow, format_number

_MARKS = {LEADER: ("★", "leader"), TIE: ("≈", "within 2 SE of the leader")}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; background: #fff; }
h2 { margin-top: 2.5rem; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.4rem; vertical-align: top; }
th { background: #f0f0f0; }
table.sortable th { cursor: pointer; user-select: none; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { overflow-wrap: anywhere; max-width: 14rem; }
td .se { display: block; color: #666; font-size: 0.8em; }
tbody tr:nth-child(even) { background: #fafafa; }
tr.leader { background: #fff6d6 !important; }
tr.tie { background: #fffbea !important; }
.mark { margin-left: 0.2rem; }
.scroll { overflow-x: auto; }
figure { margin: 1.5rem 0; }
svg.chart { width: 100%; max-width: 900px; height: auto; display: block; }
ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.3rem 1.2rem; font-size: 0.85rem; }
.swatch { display: inline-block; width: 1.4rem; height: 0.25rem; margin-right: 0.3rem; vertical-align: middle; }
img { max-width: 100%; height: auto; }
"""

_SORT_SCRIPT = """
(function () {
  function key(cell) {
    if (!cell.hasAttribute("data-value")) {
      return { text: cell.getAttribute("data-text") || cell.textContent, blank: false };
    }
    var num = parseFloat(cell.getAttribute("data-value"));
    return { num: num, blank: isNaN(num) };
  }
  function compare(a, b) {
    if (a.blank !== b.blank) { return a.blank ? 1 : -1; }
    if (a.text !== undefined) { return a.text.localeCompare(b.text); }
    return a.blank ? 0 : a.num - b.num;
  }
  function sortable(table) {
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
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.board"), sortable);
})();
"""


def html_page(ranked: Mapping[str, Sequence[Ranked]], cols: Sequence[Column], sort: str, descending: bool) -> str:
    """The whole page: an introduction, one section per task, then the per-model law figures."""
    rows = [entry.row for entries in ranked.values() for entry in entries]
    labels = model_labels(rows)
    colors = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(sorted({r.model_label for r in rows}))}
    titles = {c.key: c.title for c in cols}
    sections = [
        f'<section class="task" data-task="{html.escape(task)}">\n<h2>{html.escape(task)}</h2>\n'
        f"{_table(entries, labels)}\n{_chart(entries, labels, colors)}\n</section>"
        for task, entries in ranked.items()
    ]
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
<p>Models are ranked within each task by <code>{html.escape(sort)}</code> ({html.escape(titles.get(sort, sort))},
{order}); click a header to re-sort a table. ★ marks each task's leader, ≈ a row within 2 SE of it
(|a − b| ≤ 2·√(SE_a² + SE_b²); no ≈ where an SE is missing). Numbers are value ± SE. r is the Pearson
correlation of log10 PR_l with depth l over states 1..L (closer to −1: a cleaner equi-learning law);
rho is the law's per-layer ratio. A row is one run: model, task, corpus, documents, tokens and options.</p>
{chr(10).join(sections)}
<h2>Law per model</h2>
{_figures(rows, labels)}
<script>{_SORT_SCRIPT}</script>
</body>
</html>
"""


def model_labels(rows: Sequence[NextlawRow]) -> dict[str, str]:
    """Short label of each model (``model_label`` keys): folder name or Hub id, ``@revision``."""
    short = short_labels(row.model for row in rows)
    return {row.model_label: short[row.model] + (f"@{row.revision}" if row.revision else "") for row in rows}


def number_html(value: float, se: float) -> str:
    """A number to its SE's second significant digit, the SE below it; 4 significant digits without an SE."""
    if not (math.isfinite(value) and math.isfinite(se) and se >= 0):
        return html.escape(format_number(value, 4))
    decimals = -math.floor(math.log10(se)) + 1 if se > 0 else 10
    if decimals > 9:  # an SE far below the value's precision: the value to 6 digits
        return f'{format_number(value)}<span class="se">± {format_number(se, 2)}</span>'
    places = max(0, decimals)
    return f'{value:.{places}f}<span class="se">± {se:.{places}f}</span>'


def _table(entries: Sequence[Ranked], labels: Mapping[str, str]) -> str:
    esc = html.escape
    shown = table_columns(entries)
    quantity = entries[0].row.quantity
    head = '<th scope="col" data-key="rank" title="rank">#</th>' + "".join(
        f'<th scope="col" data-key="{esc(c.key)}" title="{esc(c.key)}">{_breakable(task_title(c, quantity))}</th>'
        for c in shown
    )
    body = []
    for entry in entries:
        symbol, meaning = _MARKS.get(entry.mark, ("", ""))
        mark = f'<span class="mark" title="{meaning}">{symbol}</span>' if symbol else ""
        cells = [f'<td class="num rank" data-value="{entry.rank}">{entry.rank}{mark}</td>']
        cells += [_cell(c, entry.row, labels) for c in shown]
        model = esc(entry.row.model_label)
        body.append(f'<tr class="{entry.mark}" data-model="{model}">' + "".join(cells) + "</tr>")
    rows = "\n".join(body)
    table = f'<table class="board">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>'
    return f'<div class="scroll">\n{table}\n</div>'


def _cell(col: Column, row: NextlawRow, labels: Mapping[str, str]) -> str:
    esc = html.escape
    value = col.value(row)
    if col.key == "model":
        label = esc(labels[row.model_label])
        return f'<td class="text" data-text="{label}" title="{esc(row.model_label)}">{label}</td>'
    if isinstance(value, str):
        title = {"corpus": _corpus_title(row), "options": row.measurement.options_json}.get(col.key, value)
        return f'<td class="text" title="{esc(title)}">{esc(value)}</td>'
    if value is None:
        return '<td class="num" data-value=""></td>'
    se = col.stderr(row) if col.stderr else math.nan
    exact = repr(value)
    se_attr = f' data-stderr="{se!r}"' if math.isfinite(se) else ""
    return f'<td class="num" data-value="{exact}"{se_attr}>{number_html(value, se)}</td>'


def _breakable(title: str) -> str:
    """An escaped header that may wrap after ``/`` and ``_`` (``arc_easy/acc_norm``), never inside a word."""
    return html.escape(title).replace("/", "/<wbr>").replace("_", "_<wbr>")


def _corpus_title(row: NextlawRow) -> str:
    measurement = row.measurement
    return measurement.corpus + (f" (sha256 {measurement.corpus_sha256})" if measurement.corpus_sha256 else "")


def _chart(entries: Sequence[Ranked], labels: Mapping[str, str], colors: Mapping[str, str]) -> str:
    """The task's relative-depth chart and its legend (models in rank order)."""
    esc = html.escape
    rows = [entry.row for entry in entries]
    suffixes = run_suffixes(rows)
    quantity = "PR" if rows[0].quantity == "pr" else rows[0].quantity
    series, left_out = [], []
    for row, suffix in zip(rows, suffixes):
        label = labels[row.model_label] + (f" ({suffix})" if suffix else "")
        title = row.model_label + (f" ({suffix})" if suffix else "")
        points = relative_points(row)
        if points:
            series.append(Series(label, title, row.model_label, colors[row.model_label], points))
        else:
            left_out.append(label)
    ylabel = f"log10({quantity}_l / {quantity}_1)"
    svg = svg_chart(series, f"{ylabel} against relative depth l / L, {rows[0].task}", ylabel)
    legend = "".join(
        f'<li title="{esc(one.title)}"><span class="swatch" style="background:{esc(one.color)}"></span>'
        f"{esc(one.label)}</li>"
        for one in series
    )
    note = f" Not drawn (no {quantity} at state 1): {esc(', '.join(left_out))}." if left_out else ""
    return (
        f'<figure class="relative">\n{svg}\n<ul class="legend">{legend}</ul>\n<figcaption>{esc(ylabel)} against '
        f"relative depth l / L, states 1..L; bands ±2 SE (delta method).{note}</figcaption>\n</figure>"
    )


def _figures(rows: Sequence[NextlawRow], labels: Mapping[str, str]) -> str:
    """One embedded PNG per model: its tasks' curves and fitted laws, one panel per quantity."""
    parts = []
    for model in dict.fromkeys(row.model_label for row in rows):
        fig = law_figure([row for row in rows if row.model_label == model])
        data = base64.b64encode(figure_bytes(fig, "png")).decode("ascii")
        label, full = html.escape(labels[model]), html.escape(model)
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="PR per hidden state, {full}" title="{full}">'
            f'<figcaption title="{full}">{label}</figcaption></figure>'
        )
    return "\n".join(parts)
