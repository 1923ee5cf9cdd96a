"""load_corpus's sample: the authors' draw (shuffle with the seed, keep the first N), its bounds, its log."""

from __future__ import annotations

import importlib.util
import json
import logging
import random
import sys
from pathlib import Path

import pytest

from nextlaw_task.corpus import Corpus, CorpusError, CorpusSource, load_corpus

BUILDER = Path(__file__).resolve().parents[2] / "tools" / "build_corpus.py"


def load(path: Path, **options) -> Corpus:
    return load_corpus(CorpusSource(location=str(path), **options))


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    """20 documents "doc 0" .. "doc 19", with 3 blank ones among them."""
    texts: list[str | None] = [f"doc {i}" for i in range(20)]
    for position, blank in ((0, ""), (7, None), (15, "  \n")):
        texts.insert(position, blank)
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


KEPT = [f"doc {i}" for i in range(20)]


def test_the_sample_is_the_first_n_of_the_seeded_shuffle(corpus_file: Path) -> None:
    corpus = load(corpus_file, sample=5, seed=7)
    order = list(range(20))
    random.Random(7).shuffle(order)
    assert corpus.texts == tuple(KEPT[i] for i in order[:5])
    assert corpus.texts == ("doc 17", "doc 15", "doc 11", "doc 18", "doc 7")
    assert corpus.n_empty == 3 and corpus.origins == ((str(corpus_file), 23),)


def test_the_sample_is_the_draw_of_tools_build_corpus(corpus_file: Path) -> None:
    spec = importlib.util.spec_from_file_location("build_corpus", BUILDER)
    builder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = builder  # dataclasses look their module up while the class is made
    spec.loader.exec_module(builder)
    sentences = [builder.Sentence(text, "docs", index) for index, text in enumerate(KEPT)]
    chosen = builder.choose({"docs": sentences}, 9, 666)
    assert load(corpus_file, sample=9).texts == tuple(sentence.text for sentence in chosen)


def test_the_same_seed_draws_the_same_sample_and_another_seed_another(corpus_file: Path) -> None:
    first = load(corpus_file, sample=6, seed=666).texts
    assert load(corpus_file, sample=6, seed=666).texts == first
    other = load(corpus_file, sample=6, seed=667).texts
    assert other != first and len(set(other)) == 6 and set(other) <= set(KEPT)


def test_a_sample_of_every_document_is_a_permutation(corpus_file: Path) -> None:
    texts = load(corpus_file, sample=20, seed=3).texts
    assert sorted(texts) == sorted(KEPT) and list(texts) != KEPT


def test_no_sample_keeps_every_document_in_order(corpus_file: Path) -> None:
    assert load(corpus_file).texts == tuple(KEPT)


@pytest.mark.parametrize("sample", [0, -1, 21])
def test_a_sample_out_of_bounds_says_how_many_documents_there_are(corpus_file: Path, sample: int) -> None:
    with pytest.raises(CorpusError) as caught:
        load(corpus_file, sample=sample)
    assert str(caught.value) == (
        f"nextlaw_sample={sample}: corpus {corpus_file} has 20 non-blank documents; set nextlaw_sample "
        "between 1 and 20, or leave it out to measure them all"
    )


def test_the_log_names_each_source_and_sums_up(tmp_path: Path, caplog) -> None:
    (tmp_path / "a.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "three"}\n{"text": ""}\n', encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="nextlaw_task.corpus"):
        load(tmp_path, sample=2, seed=1)
    assert [r.getMessage() for r in caplog.records] == [
        f"corpus {tmp_path}: 2 documents from a.txt (0 blank)",
        f"corpus {tmp_path}: 2 documents from b.jsonl (1 blank)",
        f"corpus {tmp_path}: 4 documents read, 1 blank skipped, 2 sampled with seed 1",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records)
