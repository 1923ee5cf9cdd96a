"""Reading lm-eval results files: nextlaw rows, SEs, measurements, benchmark scores, newest-wins, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nextlaw_results_factory import (
    close,
    law_metrics,
    measurement,
    results_document,
    standard_errors,
    write_results,
)

from nextlaw_task.schema import layer_metric
from nextlaw_task.reports.results import (
    LAW_METRICS,
    NoNextlawTaskError,
    ResultsError,
    find_results_files,
    load_rows,
    read_results_file,
)


def test_reads_every_nextlaw_task_with_its_prs_and_law(tmp_path: Path) -> None:
    eq, onehot = law_metrics(), law_metrics(slope=-0.05, n_layers=6)
    path = write_results(tmp_path, results_document("org/m", {"nextlaw_equilearning": eq, "nextlaw_onehot": onehot}))
    parsed = read_results_file(path)
    assert (parsed.model, parsed.revision) == ("org/m", None)
    assert [r.task for r in parsed.rows] == ["nextlaw_equilearning", "nextlaw_onehot"]
    for row, metrics in zip(parsed.rows, (eq, onehot)):
        assert row.states == tuple(range(7))
        assert all(row.layers[s] == metrics[layer_metric("pr", s, 6)] for s in row.states)
        assert all(getattr(row, m) == metrics[m] for m in LAW_METRICS)
        assert (row.n_tokens, row.n_docs, row.hidden_size) == (4321.0, 50.0, 128.0)
        assert row.source == path and row.last_state == 6 and row.fit_states == tuple(range(1, 7))
        assert row.pr_first == metrics["pr_layer_01"] and row.pr_last == metrics["pr_layer_06"]


def test_three_digit_state_names_and_partial_states(tmp_path: Path) -> None:
    deep = law_metrics(n_layers=120, slope=-0.005)
    assert "pr_layer_120" in deep and "pr_layer_007" in deep
    partial = law_metrics(states=[0, 2, 4, 8])
    doc = results_document("deep", {"nextlaw_equilearning": deep, "nextlaw_heldout": partial})
    rows = {r.task: r for r in read_results_file(write_results(tmp_path, doc)).rows}
    assert rows["nextlaw_equilearning"].states == tuple(range(121))
    assert rows["nextlaw_equilearning"].layers[7] == deep["pr_layer_007"]
    assert rows["nextlaw_heldout"].states == (0, 2, 4, 8)
    assert math.isnan(rows["nextlaw_heldout"].pr_first)
    assert rows["nextlaw_heldout"].pr_last == partial["pr_layer_08"]


def test_nan_law_metrics_and_null_read_as_nan(tmp_path: Path) -> None:
    metrics = law_metrics(n_layers=2)
    metrics.update(law_slope=math.nan, law_pearson_r=math.nan, law_r2=None)
    path = write_results(tmp_path, results_document("m", {"nextlaw_equilearning": metrics}))
    assert "NaN" in path.read_text()  # lm-eval writes a bare NaN, not standard JSON
    (row,) = read_results_file(path).rows
    assert math.isnan(row.law_slope) and math.isnan(row.law_pearson_r) and math.isnan(row.law_r2)


def test_missing_law_metric_reads_as_nan(tmp_path: Path) -> None:
    metrics = law_metrics()
    del metrics["equilearning_deviation"]
    (row,) = read_results_file(write_results(tmp_path, results_document("m", {"t": metrics}))).rows
    assert math.isnan(row.equilearning_deviation)


@pytest.mark.parametrize("as_string", [False, True])
def test_revision_from_model_args_dict_or_string(tmp_path: Path, as_string: bool) -> None:
    doc = results_document("EleutherAI/pythia-70m", {"nextlaw_equilearning": law_metrics()}, "step1000", 1.0, as_string)
    parsed = read_results_file(write_results(tmp_path, doc))
    assert (parsed.model, parsed.revision) == ("EleutherAI/pythia-70m", "step1000")
    assert parsed.rows[0].model_label == "EleutherAI/pythia-70m@step1000"


def test_model_name_falls_back_to_pretrained(tmp_path: Path) -> None:
    doc = results_document("org/x", {"nextlaw_equilearning": law_metrics()})
    del doc["model_name"]
    assert read_results_file(write_results(tmp_path, doc)).model == "org/x"


def test_folder_is_searched_recursively_and_newest_run_wins(tmp_path: Path) -> None:
    old, new = law_metrics(slope=-0.01), law_metrics(slope=-0.2)
    newer = results_document("m", {"nextlaw_equilearning": new}, date=2000.0)
    older = results_document("m", {"nextlaw_equilearning": old}, date=1000.0)
    write_results(tmp_path / "a", newer, "2026-01-01T00-00-00.1")  # file names disagree: the date wins
    write_results(tmp_path / "b" / "c", older, "2026-02-01T00-00-00.1")
    (tmp_path / "b" / "notes.json").write_text("{}")  # not results_*.json: ignored
    assert len(find_results_files(tmp_path)) == 2
    (row,) = load_rows([tmp_path])
    assert row.law_slope == new["law_slope"]


def test_file_name_timestamp_orders_runs_without_date(tmp_path: Path) -> None:
    docs = [results_document("m", {"nextlaw_equilearning": law_metrics(slope=s)}) for s in (-0.3, -0.1)]
    for doc in docs:
        del doc["date"]
    write_results(tmp_path, docs[0], "2026-03-01T09-00-00.5")
    write_results(tmp_path, docs[1], "2026-01-01T09-00-00.5")
    (row,) = load_rows([tmp_path])
    assert close(row.law_slope, law_metrics(slope=-0.3)["law_slope"])


def test_revisions_and_models_stay_separate_and_sorted(tmp_path: Path) -> None:
    for i, rev in enumerate(["step2", "step1"]):
        doc = results_document("m", {"nextlaw_equilearning": law_metrics()}, rev)
        write_results(tmp_path, doc, f"2026-01-0{i + 1}T00-00-00.0")
    write_results(tmp_path, results_document("a", {"nextlaw_onehot": law_metrics()}))
    rows = load_rows([tmp_path])
    assert [(r.model_label, r.task) for r in rows] == [
        ("a", "nextlaw_onehot"),
        ("m@step1", "nextlaw_equilearning"),
        ("m@step2", "nextlaw_equilearning"),
    ]


def test_benchmarks_come_from_the_same_run_and_fold_group_subtasks(tmp_path: Path) -> None:
    arc = {"acc": 0.5, "acc_norm": 0.55}
    nextlaw = results_document("m", {"nextlaw_equilearning": law_metrics(), "arc_easy": arc}, date=1.0)
    own = write_results(tmp_path, nextlaw, "2026-01-01T00-00-00.0")
    later = results_document(
        "m",
        {
            "arc_easy": {"acc": 0.6},
            "mmlu": {"acc": 0.3},
            "mmlu_anatomy": {"acc": 0.2},
            "wikitext": {"word_perplexity": 31.5},
        },
        date=2.0,
        group_subtasks={"mmlu": ["mmlu_anatomy"]},
    )
    other_run = write_results(tmp_path, later, "2026-01-02T00-00-00.0")
    write_results(tmp_path, results_document("other", {"hellaswag": {"acc": 0.9}}))
    (row,) = load_rows([tmp_path])
    document = json.loads(own.read_text())["results"]["arc_easy"]
    assert row.benchmarks == {f"arc_easy/{m}": document[f"{m},none"] for m in ("acc", "acc_norm")}
    assert row.benchmark_stderr == {f"arc_easy/{m}": document[f"{m}_stderr,none"] for m in ("acc", "acc_norm")}
    (named,) = load_rows([own], benchmarks=[other_run])  # named explicitly: joined; the run's own score kept
    scores = json.loads(other_run.read_text())["results"]
    assert named.benchmarks == {
        "arc_easy/acc": document["acc,none"],
        "arc_easy/acc_norm": document["acc_norm,none"],
        "mmlu/acc": scores["mmlu"]["acc,none"],
        "wikitext/word_perplexity": scores["wikitext"]["word_perplexity,none"],
    }
    assert named.benchmark_stderr["mmlu/acc"] == scores["mmlu"]["acc_stderr,none"]
    assert named.benchmark_stderr["arc_easy/acc"] == document["acc_stderr,none"]


def test_named_benchmark_files_that_cannot_join_are_errors(tmp_path: Path) -> None:
    own = write_results(tmp_path / "own", results_document("m", {"nextlaw_equilearning": law_metrics()}))
    first = write_results(tmp_path / "a", results_document("m", {"hellaswag": {"acc": 0.4}}))
    second = write_results(tmp_path / "b", results_document("m", {"hellaswag": {"acc": 0.5}}))
    stranger = write_results(tmp_path / "c", results_document("x", {"hellaswag": {"acc": 0.5}}))
    with pytest.raises(ResultsError, match="hellaswag/acc of m is also in") as info:
        load_rows([own], benchmarks=[first, second])
    assert str(second) in str(info.value) and str(first) in str(info.value)
    with pytest.raises(ResultsError, match="model x .* is on no nextlaw row"):
        load_rows([own], benchmarks=[stranger])
    with pytest.raises(ResultsError, match="a folder"):
        load_rows([own], benchmarks=[tmp_path / "a"])
    with pytest.raises(ResultsError, match="no benchmark scores"):
        load_rows([own], benchmarks=[own])
    (row,) = load_rows([own], benchmarks=[first, first])  # the same file twice is one file
    assert row.benchmarks == {"hellaswag/acc": json.loads(first.read_text())["results"]["hellaswag"]["acc,none"]}


def test_benchmark_filter_other_than_none_is_named(tmp_path: Path) -> None:
    doc = results_document("m", {"nextlaw_equilearning": law_metrics()})
    doc["results"]["gsm8k"] = {
        "alias": "gsm8k",
        "exact_match,strict-match": 0.25,
        "exact_match_stderr,strict-match": 0.1,
    }
    (row,) = load_rows([write_results(tmp_path, doc)])
    assert row.benchmarks == {"gsm8k/exact_match/strict-match": 0.25}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("not json at all", "invalid JSON"),
        ("[1, 2]", "no 'results' mapping"),
        ('{"config": {}}', "no 'results' mapping"),
        ('{"results": {"t": 3}}', "no 'results' mapping"),
    ],
)
def test_not_a_results_file_is_a_clear_error(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "results_x.json"
    path.write_text(content)
    with pytest.raises(ResultsError, match=problem) as info:
        load_rows([path])
    assert isinstance(info.value, ValueError) and str(path) in str(info.value)
    assert info.value.path == path


def test_non_numeric_pr_is_an_error(tmp_path: Path) -> None:
    doc = results_document("m", {"nextlaw_equilearning": {**law_metrics(), "pr_layer_03": "high"}})
    path = write_results(tmp_path, doc)
    with pytest.raises(ResultsError, match="pr_layer_03"):
        read_results_file(path)


def test_results_without_nextlaw_task_name_the_path(tmp_path: Path) -> None:
    path = write_results(tmp_path, results_document("m", {"arc_easy": {"acc": 0.5}}))
    with pytest.raises(NoNextlawTaskError, match="no nextlaw task") as info:
        load_rows([path])
    assert str(path) in str(info.value)


@pytest.mark.parametrize("make", ["missing", "empty_folder"])
def test_missing_path_or_empty_folder(tmp_path: Path, make: str) -> None:
    path = tmp_path / "nothing"
    if make == "empty_folder":
        path.mkdir()
    with pytest.raises(ResultsError, match="nothing"):
        load_rows([path])


finite = st.floats(min_value=1e-9, max_value=1.0, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    prs=st.dictionaries(st.integers(0, 130), finite, min_size=1, max_size=20),
    law=st.lists(st.floats(allow_nan=True, allow_infinity=False), min_size=len(LAW_METRICS), max_size=len(LAW_METRICS)),
)
def test_round_trip_of_any_values(
    tmp_path_factory: pytest.TempPathFactory, prs: dict[int, float], law: list[float]
) -> None:
    last = max(prs)
    metrics = {layer_metric("pr", s, last): v for s, v in prs.items()} | dict(zip(LAW_METRICS, law))
    folder = tmp_path_factory.mktemp("rt")
    path = write_results(folder, results_document("m", {"nextlaw_x": metrics}))
    json.loads(path.read_text())  # what lm-eval wrote is what Python's json reads
    (row,) = read_results_file(path).rows
    assert dict(row.layers) == prs
    assert all(close(getattr(row, m), v) for m, v in zip(LAW_METRICS, law))


def test_fuzziness_rows_are_read_as_fuzziness_new_and_old_names(tmp_path: Path) -> None:
    values = {s: 1000.0 - 100 * s for s in range(4)}
    new = {layer_metric("fuzziness", s, 3): v for s, v in values.items()}
    old = {layer_metric("pr", s, 3): v for s, v in values.items()}
    document = results_document("m", {"nextlaw_separation_fuzziness": new, "nextlaw_equilearning": old})
    rows = {row.task: row for row in read_results_file(write_results(tmp_path / "new", document)).rows}
    assert rows["nextlaw_separation_fuzziness"].quantity == "fuzziness"
    assert dict(rows["nextlaw_separation_fuzziness"].layers) == values
    assert rows["nextlaw_equilearning"].quantity == "pr"
    legacy = results_document("m", {"nextlaw_separation_fuzziness": old})
    (row,) = read_results_file(write_results(tmp_path / "old", legacy)).rows
    assert (row.quantity, dict(row.layers)) == ("fuzziness", values)


def test_held_out_fold_spreads_are_not_the_rows_values(tmp_path: Path) -> None:
    metrics = {layer_metric("pr", s, 3): 0.9 - 0.1 * s for s in range(4)}
    metrics |= {layer_metric("pr_fold_std", s, 3): 0.01 for s in range(4)}
    (row,) = read_results_file(write_results(tmp_path, results_document("m", {"nextlaw_heldout": metrics}))).rows
    assert dict(row.layers) == {s: 0.9 - 0.1 * s for s in range(4)}


def test_standard_errors_are_read_beside_every_value(tmp_path: Path) -> None:
    metrics = law_metrics(n_layers=4)
    errors = standard_errors(metrics)
    del errors["pr_layer_02"]  # this state's SE is "N/A"
    path = write_results(tmp_path, results_document("m", {"nextlaw_equilearning": metrics}, stderrs={
        "nextlaw_equilearning": errors}))
    entry = json.loads(path.read_text())["results"]["nextlaw_equilearning"]
    assert entry["pr_layer_01_stderr,none"] == errors["pr_layer_01"] and entry["pr_layer_02_stderr,none"] == "N/A"
    (row,) = read_results_file(path).rows
    assert row.states == tuple(range(5))  # pr_layer_01_stderr is no state of its own
    assert dict(row.layer_stderr) == {s: entry[f"pr_layer_{s:02d}_stderr,none"] for s in (0, 1, 3, 4)}
    assert dict(row.stderr) == {m: entry[f"{m}_stderr,none"] for m in LAW_METRICS}
    assert row.pr_first_stderr == entry["pr_layer_01_stderr,none"]
    assert row.pr_last_stderr == entry["pr_layer_04_stderr,none"]
    assert row.se("law_pearson_r") == entry["law_pearson_r_stderr,none"]


def test_files_without_standard_errors_read_as_none(tmp_path: Path) -> None:
    metrics = {**law_metrics(n_layers=3, quantity="fuzziness")}
    document = results_document("m", {"nextlaw_separation_fuzziness": metrics})
    for key in [k for k in document["results"]["nextlaw_separation_fuzziness"] if k.endswith("_stderr,none")]:
        del document["results"]["nextlaw_separation_fuzziness"][key]  # a file written before SEs existed
    document["results"]["nextlaw_separation_fuzziness"]["law_rho_stderr,none"] = None
    (row,) = read_results_file(write_results(tmp_path, document)).rows
    assert row.quantity == "fuzziness" and len(row.layers) == 4
    assert row.layer_stderr == {} and row.stderr == {}
    assert math.isnan(row.pr_first_stderr) and math.isnan(row.se("law_rho"))


def test_fuzziness_standard_errors_follow_their_states(tmp_path: Path) -> None:
    metrics = law_metrics(n_layers=3, quantity="fuzziness", pr0=900.0, intercept=2.5)
    errors = standard_errors(metrics)
    path = write_results(tmp_path, results_document("m", {"nextlaw_separation_fuzziness": metrics},
                                                    stderrs={"nextlaw_separation_fuzziness": errors}))
    entry = json.loads(path.read_text())["results"]["nextlaw_separation_fuzziness"]
    (row,) = read_results_file(path).rows
    assert dict(row.layer_stderr) == {s: entry[f"fuzziness_layer_{s:02d}_stderr,none"] for s in range(4)}


def test_measurement_of_new_files_and_old_files(tmp_path: Path) -> None:
    sha = "1a2b3c4d" + "e" * 56
    new = results_document("m", {"nextlaw_equilearning": law_metrics()},
                           measurement=measurement("/data/austen_sentences.jsonl", sha, max_tokens=256))
    (row,) = read_results_file(write_results(tmp_path / "new", new)).rows
    written = new["configs"]["nextlaw_equilearning"]["metadata"]["measurement"]
    assert row.measurement.corpus == written["corpus"] and row.measurement.corpus_sha256 == sha
    assert written["options"]["nextlaw_data"] == written["corpus"]  # the corpus names it, not the options
    assert dict(row.measurement.options) == {k: v for k, v in written["options"].items() if k != "nextlaw_data"}
    assert row.measurement.options["nextlaw_max_tokens"] == 256
    assert row.measurement.corpus_label == "austen_sentences.jsonl@1a2b3c4d"
    old = results_document("m", {"nextlaw_equilearning": law_metrics()},
                           metadata={"nextlaw_data": "Salesforce/wikitext", "nextlaw_max_tokens": 128})
    (row,) = read_results_file(write_results(tmp_path / "old", old)).rows
    assert (row.measurement.corpus, row.measurement.corpus_sha256) == ("Salesforce/wikitext", None)
    assert dict(row.measurement.options) == {"nextlaw_max_tokens": 128}  # pretrained and version are not options
    assert row.measurement.corpus_label == "Salesforce/wikitext"
    (plain,) = read_results_file(write_results(tmp_path / "plain", results_document("m", {"t": law_metrics()}))).rows
    assert (plain.measurement.corpus, dict(plain.measurement.options)) == ("embedded", {})


def test_a_malformed_measurement_is_a_clear_error(tmp_path: Path) -> None:
    document = results_document("m", {"nextlaw_equilearning": law_metrics()}, measurement=measurement())
    document["configs"]["nextlaw_equilearning"]["metadata"]["measurement"] = "austen"
    path = write_results(tmp_path, document)
    with pytest.raises(ResultsError, match="nextlaw_equilearning.*'measurement' is not a mapping") as info:
        read_results_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"sha": None}, {"sha": None, "corpus": "/data/other.jsonl"}),
        ({}, {"sha": "f" * 64}),
        ({}, {"n_docs": 30}),
        ({}, {"n_tokens": 999}),
        ({}, {"options": {"max_tokens": 256}}),
    ],
    ids=["corpus", "sha256", "documents", "tokens", "options"],
)
def test_runs_that_measured_differently_are_separate_rows(tmp_path: Path, first: dict, second: dict) -> None:
    base = {"corpus": "/data/austen.jsonl", "sha": "a" * 64, "n_docs": 50, "n_tokens": 4321, "options": {}}
    for i, spec in enumerate((base | first, base | second)):
        metrics = law_metrics(slope=-0.01 * (i + 1), n_docs=spec["n_docs"], n_tokens=spec["n_tokens"])
        document = results_document("m", {"nextlaw_equilearning": metrics}, date=float(i),
                                    measurement=measurement(spec["corpus"], spec["sha"], **spec["options"]))
        write_results(tmp_path, document, f"2026-01-0{i + 1}T00-00-00.0")
    rows = load_rows([tmp_path])
    assert len(rows) == 2 and len({row.key for row in rows}) == 2
    slopes = {json.loads(row.source.read_text())["results"]["nextlaw_equilearning"]["law_slope,none"] for row in rows}
    assert {row.law_slope for row in rows} == slopes


def test_the_same_corpus_under_another_path_is_the_same_measurement(tmp_path: Path) -> None:
    sha = "c" * 64
    for i, (corpus, slope) in enumerate((("/a/austen.jsonl", -0.01), ("/mnt/copy/austen.jsonl", -0.2))):
        document = results_document("m", {"nextlaw_equilearning": law_metrics(slope=slope)}, date=float(i),
                                    measurement=measurement(corpus, sha))
        write_results(tmp_path, document, f"2026-01-0{i + 1}T00-00-00.0")
    (row,) = load_rows([tmp_path])  # one key: the newer run wins
    newest = max(tmp_path.rglob("results_*.json"), key=lambda p: json.loads(p.read_text())["date"])
    assert row.source == newest
    assert row.law_slope == json.loads(newest.read_text())["results"]["nextlaw_equilearning"]["law_slope,none"]
