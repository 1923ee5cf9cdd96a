"""The leaderboard: numbers and SEs equal the JSON's, one ranking per task, leader and ties, runs never
mixed, and an HTML page that runs cleanly in Chromium: chart drawn, sorting by click, no sideways scroll."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nextlaw_results_factory import (
    BOARD_MODELS,
    close,
    law_metrics,
    measurement,
    number,
    parse_tables,
    results_document,
    standard_errors,
    write_board,
    write_results,
)
from PIL import Image

from nextlaw_task.reports.leaderboard import LeaderboardError, rank, render, sort_rows
from nextlaw_task.reports.results import NextlawRow, load_rows

CHROMIUM_INSTALL = "apt-get install -y chromium"
LAYER_KEY = re.compile(r"^(pr|fuzziness)_layer_(\d+),none$")
TITLES = {"docs": "n_docs", "layers": "layers", "hidden": "hidden_size", "rho": "law_rho", "r": "law_pearson_r",
          "R²": "law_r2", "PR_1": "pr_first", "PR_L": "pr_last", "deviation": "equilearning_deviation",
          "tokens": "n_tokens"}  # fmt: skip
SHOWN = ["n_docs", "layers", "hidden_size", "law_rho", "law_pearson_r", "law_r2", "pr_first", "pr_last",
         "equilearning_deviation", "n_tokens"]  # fmt: skip
WITH_SE = {"law_slope", "law_intercept", "law_rho", "law_pearson_r", "law_r2", "pr_ratio_last_first", "pr_first",
           "pr_last", "equilearning_deviation"}  # fmt: skip


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    """Three models, one with two tasks and SEs, benchmark scores for some, one r that is NaN."""
    out = tmp_path / "results"
    strong = {"nextlaw_equilearning": law_metrics(slope=-0.1), "nextlaw_onehot": law_metrics(slope=-0.02, wiggle=0.1)}
    errors = {task: standard_errors(metrics) for task, metrics in strong.items()}
    write_results(out, results_document("org/strong", strong | {"arc_easy": {"acc": 0.61, "acc_norm": 0.58}},
                                        stderrs=errors, measurement=measurement()))
    write_results(out, results_document("org/weak", {"nextlaw_equilearning": law_metrics(slope=-0.01, wiggle=0.2),
                                                     "wikitext": {"word_perplexity": 88.25}}))
    flat = law_metrics() | {"law_pearson_r": math.nan, "law_r2": math.nan}
    write_results(out, results_document("<b>odd|name</b>", {"nextlaw_equilearning": flat}))
    return out


@pytest.fixture
def board_dir(tmp_path: Path) -> Path:
    """The factory's realistic board: 4 models (one of 30 layers, one without SEs), 2 tasks, 2 benchmarks."""
    write_board(tmp_path / "board")
    return tmp_path / "board"


def _se(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and value is not None else math.nan


def expected(row: NextlawRow, key: str) -> tuple[Any, float]:
    """(value, SE) of a leaderboard column computed straight from the JSON file the row came from."""
    document = json.loads(row.source.read_text())
    entry = document["results"][row.task]
    layers = {int(m.group(2)): (v, _se(entry.get(k.replace(",none", "_stderr,none"))))
              for k, v in entry.items() if (m := LAYER_KEY.match(k))}  # fmt: skip
    last = max(layers)
    if key == "layers":
        return float(last), math.nan
    if key in ("pr_first", "pr_last"):
        return layers.get(1 if key == "pr_first" else last, (math.nan, math.nan))
    if "/" in key:  # a benchmark: only from the row's own results file
        task, metric = key.split("/")
        scores = document["results"].get(task, {})
        return scores.get(f"{metric},none"), _se(scores.get(f"{metric}_stderr,none"))
    return entry[f"{key},none"], _se(entry.get(f"{key}_stderr,none"))


def own_scores(row: NextlawRow) -> list[str]:
    """The ``task/metric`` benchmark scores in the row's own results file."""
    results = json.loads(row.source.read_text())["results"]
    return [f"{task}/{key.split(',')[0]}" for task, metrics in results.items() if "law_slope,none" not in metrics
            for key in metrics if "," in key and "_stderr," not in key]  # fmt: skip


def written_options(row: NextlawRow) -> dict[str, Any]:
    """The options a results file records for a row (an older file: those given), the corpus's own left out."""
    metadata = json.loads(row.source.read_text())["configs"][row.task]["metadata"]
    options = metadata["measurement"]["options"] if "measurement" in metadata else metadata
    return {k: v for k, v in options.items() if k != "nextlaw_data" and (k.startswith("nextlaw_") or
                                                                         "measurement" in metadata)}


def expected_options(rows: list[NextlawRow], row: NextlawRow) -> str:
    """The options cell from the JSON: recorded options that differ between rows, else an old file's given ones."""
    def metadata(r: NextlawRow) -> dict[str, Any]:
        return json.loads(r.source.read_text())["configs"][r.task]["metadata"]

    mine = metadata(row)
    if "measurement" not in mine:
        given = sorted(k for k in mine if k.startswith("nextlaw_") and k != "nextlaw_data")
        return ", ".join(f"{k[8:]}={mine[k]}" for k in given) or "not recorded"
    recorded = [metadata(r)["measurement"]["options"] for r in rows if "measurement" in metadata(r)]
    varying = sorted({k for o in recorded for k in o if len({json.dumps(e.get(k)) for e in recorded}) > 1})
    return ", ".join(f"{k[8:]}={mine['measurement']['options'].get(k, '')}" for k in varying)


def expected_order(rows: list[NextlawRow], key: str, descending: bool = False) -> list[NextlawRow]:
    present = [r for r in rows if not math.isnan(expected(r, key)[0])]
    absent = [r for r in rows if math.isnan(expected(r, key)[0])]
    return sorted(present, key=lambda r: expected(r, key)[0], reverse=descending) + absent


def expected_marks(ordered: list[NextlawRow], key: str) -> list[str]:
    a, se_a = expected(ordered[0], key)
    marks = ["leader"]
    for row in ordered[1:]:
        b, se_b = expected(row, key)
        finite = all(math.isfinite(v) for v in (a, se_a, b, se_b))
        marks.append("tie" if finite and abs(a - b) <= 2 * math.sqrt(se_a**2 + se_b**2) else "")
    return marks


def test_csv_values_ses_and_measurement_equal_the_json(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    head = list(parsed[0])
    assert head[:10] == ["model", "revision", "task", "rank", "mark", "corpus", "corpus_sha256", "n_docs", "n_tokens",
                         "options"]
    assert head[-1] == "source"
    for key in WITH_SE | {"arc_easy/acc", "arc_easy/acc_norm", "wikitext/word_perplexity"}:
        assert head[head.index(key) + 1] == f"{key}_stderr"  # each SE beside its value
    by_id = {(r.model, r.task): r for r in rows}
    assert len(parsed) == len(rows) == 4
    for line in parsed:
        row = by_id[(line["model"], line["task"])]
        config = json.loads(row.source.read_text())["configs"][row.task]["metadata"]
        written = config.get("measurement", {"corpus": "embedded", "corpus_sha256": None, "options": {}})
        assert (line["corpus"], line["corpus_sha256"] or None) == (written["corpus"], written["corpus_sha256"])
        options = {k: v for k, v in written["options"].items() if k != "nextlaw_data"}  # the corpus's, not an option
        assert json.loads(line["options"]) == options
        for key in SHOWN + sorted(WITH_SE - set(SHOWN)) + ["arc_easy/acc", "wikitext/word_perplexity"]:
            value, se = expected(row, key)
            assert close(float(line[key] or "nan"), math.nan if value is None else value), key  # exact
            assert line[key] != "" or value is None, key  # blank only where the run has no such score
            if f"{key}_stderr" in line:
                assert close(float(line[f"{key}_stderr"] or "nan"), se), key
                assert (line[f"{key}_stderr"] == "") == math.isnan(se), key  # no SE: blank


def test_json_export_has_numbers_and_null_for_nan(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    text = render(rows, "json")
    assert "NaN" not in text
    records = json.loads(text)
    assert isinstance(records, list) and len(records) == len(rows)
    by_id = {(r.model, r.task): r for r in rows}
    for record in records:
        row = by_id[(record["model"], record["task"])]
        assert record["source"] == str(row.source) and isinstance(record["options"], dict)
        for key in WITH_SE:
            value, se = expected(row, key)
            assert record[key] == (None if math.isnan(value) else value), key
            assert record[f"{key}_stderr"] == (None if math.isnan(se) else se), key
    odd = next(r for r in records if r["model"] == "<b>odd|name</b>")
    assert odd["law_pearson_r"] is None and odd["law_pearson_r_stderr"] is None
    assert isinstance(odd["n_tokens"], float) and odd["n_tokens"] == expected(by_id[(odd["model"], odd["task"])],
                                                                           "n_tokens")[0]


def test_markdown_has_one_table_per_task_with_value_and_se(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    text = render(rows, "md")
    tasks = sorted({r.task for r in rows})
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == tasks
    tables = parse_tables(text)
    assert len(tables) == len(tasks)
    for task, table in zip(tasks, tables):
        header, body = table[0], table[1:]
        mine = [r for r in rows if r.task == task]
        differ = len({json.dumps(written_options(r), sort_keys=True) for r in mine}) > 1
        scores = sorted({name for r in mine for name in own_scores(r)})
        assert header == ["rank", "model", "corpus", *(["options"] if differ else []),
                          *(title for key in SHOWN for title, k in TITLES.items() if k == key), *scores]
        keys = SHOWN + scores
        by_label = {r.model_label: r for r in mine}
        assert sorted(cells[1].replace("\\|", "|") for cells in body) == sorted(by_label)
        for cells in body:
            row = by_label[cells[1].replace("\\|", "|")]
            assert cells[2] == row.measurement.corpus_label
            if differ:
                assert cells[3] == expected_options(mine, row)
            for key, cell in zip(keys, cells[3 + differ:]):
                value, se = expected(row, key)
                shown, _, error = cell.partition(" ± ")
                assert close(number(shown or "nan"), math.nan if value is None else value, rel=5e-6), key
                assert (error != "") == (math.isfinite(se) and value is not None and not math.isnan(value)), key
                if error:
                    assert close(float(error), se, rel=0.05), key  # two significant digits
    assert len(tables[0][0]) != len(tables[1][0])  # each task shows the columns of its own rows


def test_options_that_differ_only_between_tasks_get_no_column(tmp_path: Path) -> None:
    tasks = {"nextlaw_equilearning": law_metrics(), "nextlaw_onehot": law_metrics(slope=-0.2)}
    document = results_document("m", tasks, measurement=measurement())
    document["configs"]["nextlaw_onehot"]["metadata"]["measurement"]["options"]["measure"] = "onehot"
    rows = load_rows([write_results(tmp_path, document)])
    assert len({json.dumps(dict(r.measurement.options)) for r in rows}) == 2  # the tasks' options differ...
    assert all(table[0][:4] == ["rank", "model", "corpus", "docs"] for table in parse_tables(render(rows, "md")))


@pytest.mark.parametrize(("key", "descending"), [("law_pearson_r", False), ("pr_last", False), ("law_r2", True)])
def test_each_task_ranks_its_own_models_with_leader_and_ties(board_dir: Path, key: str, descending: bool) -> None:
    rows = load_rows([board_dir])
    ranked = rank(rows, key, descending)
    assert list(ranked) == ["nextlaw_equilearning", "nextlaw_separation_fuzziness"]
    marks_seen = set()
    for task, entries in ranked.items():
        want = expected_order([r for r in rows if r.task == task], key, descending)
        assert [e.row for e in entries] == want
        assert [e.rank for e in entries] == list(range(1, len(want) + 1))
        assert [e.mark for e in entries] == expected_marks(want, key)
        marks_seen |= {e.mark for e in entries}
    assert {"leader", "tie", ""} <= marks_seen or key != "law_pearson_r"  # the board has ties and non-ties on r
    md_marks = [cells[0] for table in parse_tables(render(rows, "md", key, descending)) for cells in table[1:]]
    symbols = {"leader": " ★", "tie": " ≈", "": ""}
    assert md_marks == [f"{e.rank}{symbols[e.mark]}" for entries in ranked.values() for e in entries]


def test_no_tie_where_an_se_is_missing(board_dir: Path) -> None:
    rows = load_rows([board_dir])
    old = BOARD_MODELS[2][0]  # the file without SEs
    for entries in rank(rows, "n_tokens").values():  # equal token counts, but a column without SEs
        assert [e.mark for e in entries] == ["leader"] + [""] * (len(entries) - 1)
    for entries in rank(rows, "law_pearson_r").values():
        assert all(e.mark != "tie" for e in entries if e.row.model == old)
    for entries in rank(rows, "model").values():  # a text key has no leader
        assert {e.mark for e in entries} == {""}


def test_default_sort_is_most_negative_r_first_with_nan_last(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    ordered = sort_rows(rows)
    assert [r.task for r in ordered] == sorted(r.task for r in rows)  # task by task, never mixed
    eq = [row for row in ordered if row.task == "nextlaw_equilearning"]
    r = [expected(row, "law_pearson_r")[0] for row in eq]
    assert r[:-1] == sorted(r[:-1]) and math.isnan(r[-1])
    assert eq[0].model == "org/strong"
    descending = [row for row in sort_rows(rows, "law_pearson_r", descending=True) if row.task == eq[0].task]
    assert [expected(row, "law_pearson_r")[0] for row in descending][:-1] == sorted(r[:-1], reverse=True)


def test_sort_by_benchmark_and_text_columns(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    by_ppl = [r for r in sort_rows(rows, "wikitext/word_perplexity") if r.task == "nextlaw_equilearning"]
    assert by_ppl[0].model == "org/weak"  # the only run with that score; the others have none and sort last
    by_model = [r.model_label for r in sort_rows(rows, "model") if r.task == "nextlaw_equilearning"]
    assert by_model == sorted(by_model)


def test_unknown_sort_key_or_format(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    with pytest.raises(LeaderboardError, match="unknown sort key 'nope'.*law_pearson_r"):
        render(rows, "md", "nope")
    with pytest.raises(LeaderboardError, match="unknown format"):
        render(rows, "xml")


def test_runs_on_other_corpora_are_separate_rows_and_benchmarks_stay_with_their_run(tmp_path: Path) -> None:
    out = tmp_path / "results"
    for i, corpus in enumerate(("/data/austen.jsonl", "Salesforce/wikitext")):
        tasks = {"nextlaw_equilearning": law_metrics(slope=-0.05 * (i + 1))}
        if i == 0:
            tasks["arc_easy"] = {"acc": 0.7}
        write_results(out / str(i), results_document("m", tasks, measurement=measurement(corpus, None), date=float(i)))
    write_results(out / "bench", results_document("m", {"hellaswag": {"acc": 0.4}}, date=5.0))
    rows = load_rows([out])
    (table,) = parse_tables(render(rows, "md"))
    by_corpus = {cells[2]: dict(zip(table[0], cells)) for cells in table[1:]}
    assert sorted(by_corpus) == ["Salesforce/wikitext", "austen.jsonl"]
    assert "hellaswag/acc" not in table[0]  # another run's scores are not joined
    assert by_corpus["austen.jsonl"]["arc_easy/acc"].startswith("0.7")
    assert by_corpus["Salesforce/wikitext"]["arc_easy/acc"] == ""
    slopes = {r.measurement.corpus: expected(r, "law_rho")[0] for r in rows}
    assert {k: number(v["rho"].split(" ")[0]) for k, v in by_corpus.items()} == pytest.approx(
        {"austen.jsonl": slopes["/data/austen.jsonl"], "Salesforce/wikitext": slopes["Salesforce/wikitext"]}, rel=5e-6
    )


def test_html_is_self_contained_and_escaped(results_dir: Path) -> None:
    page = render(load_rows([results_dir]), "html")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", page, re.I)
    assert "url(" not in page and "@import" not in page
    assert "<b>odd" not in page and "&lt;b&gt;odd|name&lt;/b&gt;" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # one law figure per model
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert page.count('<table class="board">') == 2 and page.count("<svg") == 2  # a table and a chart per task
    assert page.count("<tr ") == 4 and page.count("<thead>") == 2
    assert '<td class="num" data-value=""></td>' in page  # a benchmark that model was not run on


def run_chromium(page: Path, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Load a page in headless Chromium; return the DOM after scripts ran and its console lines."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, f"headless Chromium is required for the HTML check: {CHROMIUM_INSTALL}"
    done = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", *(extra or ("--dump-dom",)), page.resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def with_script(page_text: str, script: str) -> str:
    """The page with one more inline script, run after the page's own once the page has loaded."""
    return page_text.replace("</body>", f"<script>window.addEventListener('load', function () {{ {script} }});"
                                         "</script>\n</body>")


def probe(dom: str) -> Any:
    """The JSON an injected script left in ``<pre id="probe">``."""
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, "the injected script did not run"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                      .replace("&gt;", ">"))  # fmt: skip


PROBE = "var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(OUT); " \
        "document.body.appendChild(pre);"


@pytest.mark.subprocess
def test_html_page_runs_in_chromium_without_console_messages(results_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "board.html"
    page.write_text(render(load_rows([results_dir]), "html"), encoding="utf-8")
    dom, console = run_chromium(page, tmp_path / "profile")
    assert console == []
    assert dom.count('<table class="board sortable">') == 2  # the inline script ran to its end


@pytest.mark.subprocess
def test_chromium_check_catches_a_script_error(results_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page_text = render(load_rows([results_dir]), "html")
    broken = page_text.replace("table.tHead.rows[0]", "table.tHeader.rows[0]")
    assert broken != page_text
    page.write_text(broken, encoding="utf-8")
    dom, console = run_chromium(page, tmp_path / "profile")
    assert any("Uncaught TypeError" in line for line in console)
    assert 'class="board sortable"' not in dom and 'class="board"' in dom


@pytest.mark.subprocess
def test_chromium_draws_every_models_curve_with_the_json_values(board_dir: Path, tmp_path: Path) -> None:
    rows = load_rows([board_dir])
    script = (
        "var OUT = []; document.querySelectorAll('section.task').forEach(function (s) {"
        " s.querySelectorAll('svg.chart g.series').forEach(function (g) {"
        "  var line = g.querySelector('path.line'); var box = line.getBBox();"
        "  OUT.push({task: s.getAttribute('data-task'), model: g.getAttribute('data-model'),"
        "   length: line.getTotalLength(), width: box.width, height: box.height,"
        "   bands: g.querySelectorAll('path.band').length, hover: g.querySelector('title').textContent,"
        "   points: Array.prototype.map.call(g.querySelectorAll('circle'), function (c) {"
        "    return [parseInt(c.getAttribute('data-state')), parseFloat(c.getAttribute('data-y'))]; })});"
        " }); });" + PROBE
    )
    page = tmp_path / "board.html"
    page.write_text(with_script(render(rows, "html"), script), encoding="utf-8")
    dom, console = run_chromium(page, tmp_path / "profile")
    assert console == []
    drawn = {(s["task"], s["model"]): s for s in probe(dom)}
    assert set(drawn) == {(r.task, r.model_label) for r in rows}  # every model of every task
    for row in rows:
        series = drawn[(row.task, row.model_label)]
        assert series["length"] > 100 and series["width"] > 100 and series["height"] > 10  # really drawn
        assert series["hover"] == row.model_label  # the full name on hover
        values = {s: v for s, (v, _) in ((s, expected_layer(row, s)) for s in range(1, row.last_state + 1))}
        want = [[s, math.log10(values[s] / values[1])] for s in sorted(values)]
        assert [p[0] for p in series["points"]] == [s for s, _ in want]
        assert all(math.isclose(p[1], y, rel_tol=1e-12, abs_tol=1e-15) for p, (_, y) in zip(series["points"], want))
        has_se = not math.isnan(expected_layer(row, 1)[1])
        assert series["bands"] == (1 if has_se else 0)  # no band where the file has no SEs


def expected_layer(row: NextlawRow, state: int) -> tuple[float, float]:
    entry = json.loads(row.source.read_text())["results"][row.task]
    name = f"{row.quantity}_layer_{state:02d}"
    return entry[f"{name},none"], _se(entry.get(f"{name}_stderr,none"))


@pytest.mark.subprocess
def test_clicking_a_header_sorts_its_table(board_dir: Path, tmp_path: Path) -> None:
    rows = load_rows([board_dir])
    script = (
        "var table = document.querySelector('section[data-task=\"nextlaw_equilearning\"] table.board');"
        "function order() { return Array.prototype.map.call(table.tBodies[0].rows,"
        " function (r) { return r.getAttribute('data-model'); }); }"
        "function click(key) { table.querySelector('th[data-key=\"' + key + '\"]').click(); }"
        "click('arc_easy/acc'); var up = order();"
        "click('law_rho'); click('law_rho'); var down = order();"  # the second click: descending
        "var OUT = {up: up, down: down};" + PROBE
    )
    page = tmp_path / "board.html"
    page.write_text(with_script(render(rows, "html"), script), encoding="utf-8")
    dom, console = run_chromium(page, tmp_path / "profile")
    assert console == []
    order = probe(dom)
    eq = [r for r in rows if r.task == "nextlaw_equilearning"]
    assert order["up"] == [r.model_label for r in expected_order(eq, "arc_easy/acc")]
    assert order["down"] == [r.model_label for r in expected_order(eq, "law_rho", descending=True)]
    assert order["up"] != order["down"]


@pytest.mark.subprocess
def test_screenshot_size_and_no_sideways_scrolling(board_dir: Path, tmp_path: Path) -> None:
    rows = load_rows([board_dir])
    assert len({r.model for r in rows}) == 4 and max(r.last_state for r in rows) == 30
    assert len({r.task for r in rows}) == 2 and len({k for r in rows for k in r.benchmarks}) == 2
    page_text = render(rows, "html")
    page = tmp_path / "board.html"
    page.write_text(page_text, encoding="utf-8")
    shot = tmp_path / "board.png"
    run_chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,1000", "--hide-scrollbars")
    with Image.open(shot) as image:
        assert image.size == (1400, 1000)
        assert len(image.convert("L").getcolors(256)) > 20  # something was drawn, not a blank page
    script = (
        "var root = document.documentElement; var boxes = document.querySelectorAll('.scroll');"
        "var OUT = {width: window.innerWidth, page: root.scrollWidth, fits: root.scrollWidth <= window.innerWidth,"
        " tables: Array.prototype.map.call(boxes, function (b) { return b.scrollWidth <= b.clientWidth; })};" + PROBE
    )
    wide = tmp_path / "probe.html"
    wide.write_text(with_script(page_text, script), encoding="utf-8")
    dom, console = run_chromium(wide, tmp_path / "profile2", "--window-size=1400,1000", "--dump-dom")
    assert console == []
    found = probe(dom)
    assert found["width"] == 1400 and found["fits"], found
    assert found["tables"] == [True, True], found  # nor inside a table's own scroll box
