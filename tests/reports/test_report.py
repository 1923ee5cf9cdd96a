"""The markdown report: PR per state and law per task, numbers as in the results JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

from nextlaw_results_factory import (
    close,
    law_metrics,
    measurement,
    number,
    parse_tables,
    results_document,
    write_results,
)

from nextlaw_task.reports.report import LAW_COLUMNS, STATES_COLUMN, markdown_report, markdown_table
from nextlaw_task.reports.results import load_rows


def test_report_tables_hold_the_json_numbers(tmp_path: Path) -> None:
    tasks = {"nextlaw_equilearning": law_metrics(), "nextlaw_onehot": law_metrics(slope=-0.02, n_layers=6)}
    tasks["nextlaw_onehot"]["law_rho"] = math.nan
    text = markdown_report(load_rows([write_results(tmp_path, results_document("org/m", tasks))]))
    assert text.startswith("## org/m\n")
    pr_table, law_table = parse_tables(text)
    assert pr_table[0] == ["state", "nextlaw_equilearning", "nextlaw_onehot"]
    for cells in pr_table[1:]:
        state = int(cells[0])
        for task, cell in zip(pr_table[0][1:], cells[1:]):
            assert close(number(cell), tasks[task][f"pr_layer_{state:02d}"], rel=5e-6)
    assert [c for c in law_table[0][1:]] == [STATES_COLUMN, *(title for title, _ in LAW_COLUMNS)]
    for cells in law_table[1:]:
        assert cells[1] == "?"  # the file does not say which states the law was fitted over
        for (_, attr), cell in zip(LAW_COLUMNS, cells[2:]):
            assert close(number(cell), tasks[cells[0]][attr], rel=5e-6)
    assert law_table[1][LAW_COLUMNS.index(("tokens", "n_tokens")) + 2] == "4321"


def test_the_report_names_the_states_fitted_and_the_states_that_are_not_results(tmp_path: Path) -> None:
    metrics = law_metrics(states=range(5))
    metrics |= {"pr_layer_00": math.nan, "ill_posed_layer_00": 1.0, "law_first_state": 2.0, "law_last_state": 4.0,
                "law_n_states": 3.0}
    (row,) = load_rows([write_results(tmp_path, results_document("m", {"nextlaw_equilearning": metrics}))])
    assert row.ill_posed == (0,) and row.law_states_label == "2..4 (3)" and 0 in row.layers
    text = markdown_report([row])
    law_table = parse_tables(text)[1]
    assert law_table[1][:2] == ["nextlaw_equilearning", "2..4 (3)"]
    assert "nextlaw_equilearning: states 0 are not results (NaN), left out of the law" in text


def test_one_section_per_model_and_missing_states_are_nan(tmp_path: Path) -> None:
    write_results(tmp_path, results_document("a", {"nextlaw_equilearning": law_metrics(states=[0, 1, 2])}))
    write_results(tmp_path, results_document("b", {"nextlaw_equilearning": law_metrics()}, revision="v2"))
    heldout = results_document("a", {"nextlaw_heldout": law_metrics(states=[0, 1, 2, 3])})
    write_results(tmp_path, heldout, "2027-01-01T00-00-00.0")
    text = markdown_report(load_rows([tmp_path]))
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## a", "## b@v2"]
    pr_a = parse_tables(text)[0]
    assert pr_a[-1][:3] == ["3", "nan", pr_a[-1][2]] and pr_a[-1][2] != "nan"


def test_table_escapes_pipes_and_aligns_numbers() -> None:
    table = markdown_table(["name", "x"], [["a|b", "1"]], [False, True])
    assert table.splitlines() == ["| name | x |", "|---|---:|", "| a\\|b | 1 |"]


def test_runs_of_a_task_on_other_corpora_are_named_apart(tmp_path: Path) -> None:
    for i, corpus in enumerate(("/d/austen.jsonl", "Salesforce/wikitext")):
        doc = results_document("m", {"nextlaw_equilearning": law_metrics(slope=-0.05 * (i + 1))},
                               measurement=measurement(corpus, None))
        write_results(tmp_path / str(i), doc)
    rows = load_rows([tmp_path])
    pr_table, law_table = parse_tables(markdown_report(rows))
    names = [f"nextlaw_equilearning [{row.measurement.corpus_label}]" for row in rows]
    assert sorted(names) == ["nextlaw_equilearning [Salesforce/wikitext]", "nextlaw_equilearning [austen.jsonl]"]
    assert pr_table[0][1:] == names and [cells[0] for cells in law_table[1:]] == names
    for row, cells in zip(rows, law_table[1:]):
        written = json.loads(row.source.read_text())["results"]["nextlaw_equilearning"]
        assert close(number(cells[LAW_COLUMNS.index(("slope", "law_slope")) + 2]), written["law_slope,none"], rel=5e-6)
