"""load_corpus on folders: nested files of every form, their order, skipped files, nested datasets."""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nextlaw_task.corpus import SUPPORTED_FORMS, Corpus, CorpusError, CorpusSource, load_corpus


def load(path: Path, **options) -> Corpus:
    return load_corpus(CorpusSource(location=str(path), **options))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_one_of_each_form(root: Path, field: str = "text") -> None:
    """One file per form; each document names the file it is in."""
    write(root / "b.txt", "b.txt one\n\nb.txt two\n")
    write(root / "a.txt", "a.txt\n")
    write(root / "A.json", json.dumps([{field: "A.json"}]))
    write(root / "a" / "b.jsonl", json.dumps({field: "a/b.jsonl"}) + "\n" + json.dumps({field: None}) + "\n")
    write(root / "a" / "z.csv", f"id,{field}\n1,a/z.csv\n")
    (root / "a.jsonl.gz").write_bytes(gzip.compress(json.dumps({field: "a.jsonl.gz"}).encode("utf-8")))
    (root / "sub" / "deep").mkdir(parents=True)
    pq.write_table(pa.table({field: ["sub/deep/x.parquet"]}), root / "sub" / "deep" / "x.parquet")


def test_nested_files_are_read_in_the_order_of_their_relative_paths(tmp_path: Path, caplog) -> None:
    write_one_of_each_form(tmp_path)
    with caplog.at_level(logging.INFO, logger="nextlaw_task.corpus"):
        corpus = load(tmp_path)
    order = ("A.json", "a.jsonl.gz", "a.txt", "a/b.jsonl", "a/z.csv", "b.txt", "sub/deep/x.parquet")
    assert corpus.texts == ("A.json", "a.jsonl.gz", "a.txt", "a/b.jsonl", "a/z.csv", "b.txt one", "b.txt two",
                            "sub/deep/x.parquet")
    assert corpus.origins == tuple(zip(order, (1, 1, 1, 2, 1, 2, 1)))
    assert corpus.n_empty == 1 and corpus.location == str(tmp_path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_text_field_applies_to_every_form_in_the_folder(tmp_path: Path) -> None:
    write_one_of_each_form(tmp_path, field="body")
    corpus = load(tmp_path, text_field="body")
    assert len(corpus.texts) == 8 and corpus.texts[-1] == "sub/deep/x.parquet"


def test_other_files_are_skipped_with_one_warning_and_hidden_ones_silently(tmp_path: Path, caplog) -> None:
    write(tmp_path / "doc.txt", "kept\n")
    write(tmp_path / ".hidden.txt", "hidden document\n")
    write(tmp_path / ".git" / "notes.txt", "hidden folder\n")
    for name in ["README.md", "z.docx", "notes/a.pdf", "notes/b.txt.bak", "c.gz", "d.tsv", "e"]:
        write(tmp_path / name, "not a document\n")
    with caplog.at_level(logging.WARNING, logger="nextlaw_task.corpus"):
        corpus = load(tmp_path)
    assert corpus.texts == ("kept",) and corpus.origins == (("doc.txt", 1),)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{tmp_path}: skipped 7 file(s) of no corpus form: README.md, c.gz, d.tsv, e, notes/a.pdf, ...; "
        "corpus files end in .txt, .jsonl, .jsonl.gz, .json, .json.gz, .csv or .parquet"
    ]


def test_a_pipe_in_a_folder_is_skipped_without_blocking(tmp_path: Path, caplog) -> None:
    write(tmp_path / "doc.txt", "kept\n")
    os.mkfifo(tmp_path / "fifo.txt")
    with caplog.at_level(logging.WARNING, logger="nextlaw_task.corpus"):
        assert load(tmp_path).texts == ("kept",)
    assert "skipped 1 file(s) of no corpus form: fifo.txt;" in caplog.text


def test_a_nested_save_to_disk_folder_is_one_source(tmp_path: Path, caplog) -> None:
    write(tmp_path / "a.txt", "first\n")
    write(tmp_path / "z.txt", "last\n")
    datasets.Dataset.from_dict({"text": ["ds one", "ds two"]}).save_to_disk(str(tmp_path / "m" / "ds"))
    with caplog.at_level(logging.WARNING, logger="nextlaw_task.corpus"):
        corpus = load(tmp_path)
    assert corpus.texts == ("first", "ds one", "ds two", "last")
    assert corpus.origins == (("a.txt", 1), ("m/ds", 2), ("z.txt", 1))
    assert caplog.text == ""  # the dataset's .arrow and state files are not "skipped files"


def test_links_are_followed_except_back_up_the_tree(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "doc.txt", "linked twice\n")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "linked").symlink_to(tmp_path / "sub", target_is_directory=True)
    corpus = load(tmp_path)
    assert corpus.texts == ("linked twice", "linked twice")
    assert corpus.origins == (("linked/doc.txt", 1), ("sub/doc.txt", 1))


def test_an_error_in_a_nested_file_names_that_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "fine\n")
    bad = write(tmp_path / "deep" / "bad.jsonl", '{"text": "fine"}\n{oops\n')
    with pytest.raises(CorpusError) as caught:
        load(tmp_path)
    assert str(caught.value).startswith(f"{bad}, line 2: not valid JSON")


@pytest.mark.parametrize("others", [[], ["notes.md", "sub/x.doc"]])
def test_a_folder_without_corpus_files_names_the_folder_and_the_forms(tmp_path: Path, others: list[str]) -> None:
    for name in others:
        write(tmp_path / name, "x\n")
    write(tmp_path / ".hidden.txt", "hidden\n")
    with pytest.raises(CorpusError) as caught:
        load(tmp_path)
    listed = " (only 2 other files: notes.md, sub/x.doc)" if others else ""
    assert str(caught.value) == (f"{tmp_path}: no corpus file in this folder or its sub-folders{listed}; "
                                 f"accepted forms: {SUPPORTED_FORMS}")
