"""The leaderboard: numbers equal the JSON's, sorting, and an HTML page that runs cleanly in Chromium."""

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

import pytest
from nextlaw_results_factory import close, law_metrics, number, parse_tables, results_document, write_results

from nextlaw_task.reports.leaderboard import BASE_COLUMNS, LeaderboardError, render, sort_rows
from nextlaw_task.reports.results import NextlawRow, load_rows

CHROMIUM_INSTALL = "apt-get install -y chromium"


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    """Three models, one with two tasks, with benchmark scores for some."""
    out = tmp_path / "results"
    write_results(
        out,
        results_document(
            "org/strong",
            {"nextlaw_equilearning": law_metrics(slope=-0.1), "nextlaw_onehot": law_metrics(slope=-0.02, wiggle=0.1),
             "arc_easy": {"acc": 0.61, "acc_norm": 0.58}},
        ),
    )
    write_results(out, results_document("org/weak", {"nextlaw_equilearning": law_metrics(slope=-0.01, wiggle=0.2),
                                                     "wikitext": {"word_perplexity": 88.25}}))
    flat = law_metrics() | {"law_pearson_r": math.nan, "law_r2": math.nan}
    write_results(out, results_document("<b>odd|name</b>", {"nextlaw_equilearning": flat}))
    return out


def expected(row: NextlawRow, key: str) -> float | str:
    """A leaderboard value computed straight from the JSON file the row came from."""
    data = json.loads(row.source.read_text())
    metrics = data["results"][row.task]
    prs = {int(k.split(",")[0].rsplit("_", 1)[1]): v for k, v in metrics.items()
           if k.startswith("pr_layer_") and "stderr" not in k}
    last = max(prs)
    direct = {
        "model": row.model_label, "task": row.task, "layers": float(last),
        "pr_first": prs.get(1, math.nan), "pr_last": prs[last],
    }
    if key in direct:
        return direct[key]
    if "/" in key:
        task, metric = key.split("/")
        for path in row.source.parent.parent.rglob("results_*.json"):
            doc = json.loads(path.read_text())
            if doc["model_name"] == row.model and task in doc["results"]:
                return doc["results"][task][f"{metric},none"]
        return math.nan
    return metrics[f"{key},none"]


def test_csv_numbers_equal_the_json(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    keys = [c.key for c in BASE_COLUMNS] + ["arc_easy/acc", "arc_easy/acc_norm", "wikitext/word_perplexity"]
    assert list(parsed[0]) == keys
    by_id = {(r.model_label, r.task): r for r in rows}
    assert len(parsed) == len(rows) == 4
    for line in parsed:
        row = by_id[(line["model"], line["task"])]
        for key in keys[2:]:
            want = expected(row, key)
            assert line[key] != "" or math.isnan(want), key  # blank only where the model has no score
            assert close(float(line[key] or "nan"), want), key  # exact: repr round-trips


def test_markdown_numbers_equal_the_json_to_six_digits(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    (table,) = parse_tables(render(rows, "md"))
    header, body = table[0], table[1:]
    assert header[:11] == ["model", "task", "layers", "hidden", "rho", "r", "R²", "PR_1", "PR_L", "deviation", "tokens"]
    keys = [c.key for c in BASE_COLUMNS] + header[11:]
    by_id = {(r.model_label, r.task): r for r in rows}
    for cells in body:
        row = by_id[(cells[0].replace("\\|", "|"), cells[1])]
        for key, cell in zip(keys[2:], cells[2:]):
            assert close(number(cell or "nan"), expected(row, key), rel=5e-6), key


def test_default_sort_is_most_negative_r_first_with_nan_last(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    ordered = sort_rows(rows)
    r = [row.law_pearson_r for row in ordered]
    assert r[:-1] == sorted(r[:-1]) and math.isnan(r[-1])
    assert ordered[0].model == "org/strong" and ordered[0].task == "nextlaw_equilearning"
    descending = [row.law_pearson_r for row in sort_rows(rows, "law_pearson_r", descending=True)]
    assert descending[:-1] == sorted(r[:-1], reverse=True) and math.isnan(descending[-1])


def test_sort_by_benchmark_and_text_columns(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    by_ppl = sort_rows(rows, "wikitext/word_perplexity")
    assert by_ppl[0].model == "org/weak"
    assert [r.model_label for r in sort_rows(rows, "model")] == sorted(r.model_label for r in rows)


def test_unknown_sort_key_or_format(results_dir: Path) -> None:
    rows = load_rows([results_dir])
    with pytest.raises(LeaderboardError, match="unknown sort key 'nope'.*law_pearson_r"):
        render(rows, "md", "nope")
    with pytest.raises(LeaderboardError, match="unknown format"):
        render(rows, "xml")


def test_html_is_self_contained_and_escaped(results_dir: Path) -> None:
    page = render(load_rows([results_dir]), "html")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", page, re.I)
    assert "url(" not in page and "@import" not in page
    assert "<b>odd" not in page and "&lt;b&gt;odd|name&lt;/b&gt;" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # one law figure per model
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert page.count("<tr>") == 1 + 4
    assert '<td class="num" data-value=""></td>' in page  # a benchmark that model was not run on


def run_chromium(page: Path, profile: Path) -> tuple[str, list[str]]:
    """Load a page in headless Chromium; return the DOM after scripts ran and its console lines."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, f"headless Chromium is required for the HTML check: {CHROMIUM_INSTALL}"
    done = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.subprocess
def test_html_page_runs_in_chromium_without_console_messages(results_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "board.html"
    page.write_text(render(load_rows([results_dir]), "html"), encoding="utf-8")
    dom, console = run_chromium(page, tmp_path / "profile")
    assert console == []
    assert 'id="leaderboard" class="sortable"' in dom  # the inline script ran to its end


@pytest.mark.subprocess
def test_chromium_check_catches_a_script_error(results_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page_text = render(load_rows([results_dir]), "html")
    broken = page_text.replace('getElementById("leaderboard")', 'getElementById("missing")')
    page.write_text(broken, encoding="utf-8")
    dom, console = run_chromium(page, tmp_path / "profile")
    assert any("Uncaught TypeError" in line for line in console)
    assert 'class="sortable"' not in dom
