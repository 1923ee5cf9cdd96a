"""Measurement identity and the short names of models and corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nextlaw_results_factory import law_metrics, measurement, results_document, write_results

from nextlaw_task.reports.measurement import (
    Measurement,
    options_differ,
    options_text,
    run_suffixes,
    short_labels,
    short_name,
    varying_options,
)
from nextlaw_task.reports.results import load_rows


@pytest.mark.parametrize(
    ("location", "short"),
    [
        ("/data/corpora/austen_sentences.jsonl", "austen_sentences.jsonl"),
        ("corpora/web.parquet", "web.parquet"),
        ("./my corpus/", "my corpus"),
        ("~/texts/a/b", "b"),
        ("Salesforce/wikitext", "Salesforce/wikitext"),
        ("EleutherAI/pythia-410m", "EleutherAI/pythia-410m"),
        ("/home/u/ckpt/run-7/checkpoint-12000", "checkpoint-12000"),
        ("embedded", "embedded"),
    ],
)
def test_short_name_keeps_hub_ids_and_cuts_paths(location: str, short: str) -> None:
    assert short_name(location) == short


def test_short_labels_lengthen_paths_until_they_differ() -> None:
    names = ["/r/run1/checkpoint-300", "/r/run2/checkpoint-300", "/x/a/b/gpt2", "gpt2", "org/model"]
    assert short_labels(names) == {
        "/r/run1/checkpoint-300": "run1/checkpoint-300",
        "/r/run2/checkpoint-300": "run2/checkpoint-300",
        "/x/a/b/gpt2": "b/gpt2",
        "gpt2": "gpt2",
        "org/model": "org/model",
    }


def test_identity_prefers_the_sha256_and_labels_show_its_first_digits() -> None:
    sha = "0123456789abcdef" * 4
    one, two = Measurement("/a/x.jsonl", sha, {"k": 1}), Measurement("/b/y.jsonl", sha, {"k": 1})
    assert one.identity == two.identity and one.corpus_label == "x.jsonl@01234567"
    assert Measurement("/a/x.jsonl").identity != Measurement("/b/x.jsonl").identity
    assert Measurement("/a/x.jsonl", sha, {"k": 1}).identity != Measurement("/a/x.jsonl", sha, {"k": 2}).identity
    assert json.loads(one.options_json) == {"k": 1}


def test_run_suffixes_name_only_what_differs(tmp_path: Path) -> None:
    runs = [
        ("a", "/d/austen.jsonl", 50, {}),
        ("a", "/d/austen.jsonl", 50, {"max_tokens": 256}),
        ("a", "/d/web.jsonl", 50, {}),
        ("b", "/d/austen.jsonl", 30, {}),
    ]
    for i, (model, corpus, docs, options) in enumerate(runs):
        document = results_document(model, {"nextlaw_equilearning": law_metrics(n_docs=docs)},
                                     measurement=measurement(corpus, None, **options))
        write_results(tmp_path / str(i), document)
    rows = load_rows([tmp_path])
    suffixes = {(r.model, r.measurement.corpus, r.measurement.options["nextlaw_max_tokens"]): s
                for r, s in zip(rows, run_suffixes(rows))}
    assert suffixes == {
        ("a", "/d/austen.jsonl", 512): "austen.jsonl, max_tokens=512",
        ("a", "/d/austen.jsonl", 256): "austen.jsonl, max_tokens=256",
        ("a", "/d/web.jsonl", 512): "web.jsonl, max_tokens=512",
        ("b", "/d/austen.jsonl", 512): "",  # alone of its model and task
    }
    assert varying_options(rows) == ["nextlaw_max_tokens"]


def test_options_column_text_for_recorded_and_older_files(tmp_path: Path) -> None:
    runs = [
        ("new256", {"measurement": measurement(max_tokens=256)}),
        ("new512", {"measurement": measurement()}),
        ("old", {"metadata": {"nextlaw_max_tokens": 128, "nextlaw_layers": "every:2"}}),
        ("bare", {}),
    ]
    for name, extra in runs:
        write_results(tmp_path, results_document(name, {"nextlaw_equilearning": law_metrics()}, **extra))
    rows = {row.model: row for row in load_rows([tmp_path])}
    assert options_differ(rows.values()) and varying_options(rows.values()) == ["nextlaw_max_tokens"]
    texts = {name: options_text(row.measurement, ["nextlaw_max_tokens"]) for name, row in rows.items()}
    assert texts == {
        "new256": "max_tokens=256",
        "new512": "max_tokens=512",
        "old": "layers=every:2, max_tokens=128",  # what the older run was given
        "bare": "not recorded",
    }
    assert not options_differ([rows["new512"], rows["new512"]])
