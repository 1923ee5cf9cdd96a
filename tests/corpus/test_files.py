"""load_corpus on single files: every form end to end, text_field, blank values, and the errors."""

from __future__ import annotations

import csv
import gzip
import json
import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nextlaw_task.corpus import (SUPPORTED_FORMS, Corpus, CorpusError, CorpusSource, embedded_corpus_path, load_corpus,
                                 read_documents)


def load(path: Path | str, **options) -> Corpus:
    return load_corpus(CorpusSource(location=str(path), **options))


def jsonl(records: list[object]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def test_txt_paragraphs_any_case_of_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "book.TXT"
    path.write_text("It is a truth\n  universally acknowledged.\n\n\n   \nSecond.\n", encoding="utf-8")
    corpus = load(path)
    assert corpus == Corpus(texts=("It is a truth universally acknowledged.", "Second."), n_empty=0,
                            origins=((str(path), 2),), location=str(path))


def test_jsonl_with_a_text_field_counts_null_missing_and_blank_values(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    records = [{"body": "a"}, {"body": None}, {"other": 1}, {"body": " \t"}, {"body": ""}, {"body": "b", "x": 2}]
    path.write_text(jsonl(records), encoding="utf-8")
    corpus = load(path, text_field="body")
    assert corpus.texts == ("a", "b") and corpus.n_empty == 4 and corpus.origins == ((str(path), 6),)


def test_jsonl_gz_reads_the_decompressed_lines(tmp_path: Path) -> None:
    path = tmp_path / "docs.JSONL.GZ"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write('\ufeff{"text": "caf\u00e9"}\n\n{"text": "second"}\n')
    assert load(path).texts == ("caf\u00e9", "second")


def test_json_array_of_objects_with_a_text_field(tmp_path: Path) -> None:
    path = tmp_path / "docs.json"
    path.write_text(json.dumps([{"content": "x"}, {"content": None}, {"content": "y"}], indent=2), encoding="utf-8")
    corpus = load(path, text_field="content")
    assert corpus.texts == ("x", "y") and corpus.n_empty == 1 and corpus.origins == ((str(path), 3),)


@pytest.mark.parametrize("name", ["lines.json", "lines.json.gz"])
def test_json_file_may_hold_json_lines(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    data = jsonl([{"t": "one"}, {"t": "two"}]).encode("utf-8")
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert load(path, text_field="t").texts == ("one", "two")


def test_csv_column_with_quotes_line_breaks_empty_and_short_rows(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["id", "body"], ["1", 'She said "yes", then left.'], ["2", "two\nlines"], ["3", ""]])
        handle.write("\r\n4\r\n5,last\r\n")  # an empty line (no row), then a row without the column
    corpus = load(path, text_field="body")
    assert corpus.texts == ('She said "yes", then left.', "two\nlines", "last")
    assert corpus.n_empty == 2 and corpus.origins == ((str(path), 5),)


def test_csv_reads_a_field_beyond_the_default_limit_and_restores_it(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    long_text = "word " * 60_000  # 300 000 characters: csv's default limit is 131 072
    path.write_text(f'\ufefftext\n"{long_text}"\n', encoding="utf-8")
    limit = csv.field_size_limit()
    assert load(path).texts == (long_text,)
    assert csv.field_size_limit() == limit


def test_parquet_column_with_nulls(tmp_path: Path) -> None:
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"n": [1, 2, 3, 4], "body": ["p", None, "q", "  "]}), path)
    corpus = load(path, text_field="body")
    assert corpus.texts == ("p", "q") and corpus.n_empty == 2 and corpus.origins == ((str(path), 4),)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("docs.csv", "id,body\n1,x\n", "no field or column 'text' (it has: 'id', 'body'); set nextlaw_text_field"),
        ("docs.jsonl", jsonl([{"body": "x"}, {"id": 2}]), "no field or column 'text' (it has: 'body', 'id')"),
        ("docs.json", json.dumps([{"body": "x"}]), "no field or column 'text' (it has: 'body')"),
        ("docs.parquet", None, "no field or column 'text' (it has: 'n', 'body'); set nextlaw_text_field"),
    ],
)
def test_missing_text_field_lists_what_the_file_has(tmp_path: Path, name: str, content: str | None,
                                                    expected: str) -> None:
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"n": [1], "body": ["x"]}), path)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: {expected}")


@pytest.mark.parametrize(
    ("name", "content", "where", "found"),
    [
        ("docs.jsonl", jsonl([{"text": "a"}, {"text": 5}]), "line 2", '"text" is a number'),
        ("docs.json", json.dumps([{"text": "a"}, {"text": ["x"]}]), "record 1", '"text" is an array'),
        ("docs.json", json.dumps([{"text": "a"}, "b"]), "record 1", "got a string"),
        ("docs.json", '[{"text": "\\ud800"}]', "record 0", "unpaired surrogate"),
        ("docs.parquet", None, "row 1", '"text" is a number'),
    ],
)
def test_a_value_that_is_no_text_names_its_line_record_or_row(tmp_path: Path, name: str, content: str | None,
                                                              where: str, found: str) -> None:
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"text": pa.array([None, 7], pa.int64())}), path)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}, {where}: ") and found in str(caught.value)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("docs.json", '[{"text": "a"},\n {"text": }]', ", line 2: not valid JSON (Expecting value at column 11)"),
        ("docs.jsonl", '{"text": "a"}\n{"text": "b"\n', ', line 2: not valid JSON'),
        ("docs.csv", 'id,text\n1,fine\n2,"open\n3,more\n', ", line 3: not valid CSV (unexpected end of data, "
                                                          "reading up to line 4)"),
        ("docs.csv", 'text\n1,"b"c\n', ", line 2: not valid CSV (',' expected after '\"'"),
        ("docs.csv", "", ": the CSV file is empty; its first line must be a header row"),
        ("docs.parquet", "not parquet", ": not a readable Parquet file (Arrow"),
        ("docs.jsonl.gz", "not gzip", ": not a valid gzip file (BadGzipFile: "),
        ("docs.xml", "<text/>", ": unsupported corpus form '.xml'; pass " + SUPPORTED_FORMS),
        ("docs", "text", ": unsupported corpus form '(no suffix)'"),
    ],
)
def test_a_malformed_file_is_named_with_its_line(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}{expected}")


@pytest.mark.parametrize("name", ["latin.csv", "latin.json", "latin.jsonl.gz"])
def test_not_utf8_names_the_byte_offset_and_an_iconv_command(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    data = 'text\ncaf\u00e9\n'.encode("latin-1")
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(CorpusError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid UTF-8 at byte offset 8")
    if name.endswith(".gz"):
        assert "(after decompressing)" in message
        assert f"gunzip -c {path} | iconv -f LATIN1 -t UTF-8 | gzip > fixed.jsonl.gz" in message
    else:
        assert f"iconv -f LATIN1 -t UTF-8 {path} > fixed{path.suffix}" in message


@pytest.mark.parametrize(("read", "name"), [(load, "corpus.csv"), (read_documents, "corpus.jsonl")])
def test_a_pipe_is_refused_without_blocking(tmp_path: Path, read, name: str) -> None:
    pipe = tmp_path / name
    os.mkfifo(pipe)  # no writer: opening it for reading would block forever
    raised: list[BaseException] = []

    def run() -> None:
        try:
            read(pipe)
        except BaseException as error:  # handed to the test thread
            raised.append(error)

    reader = threading.Thread(target=run, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), f"{read.__name__} blocked on a pipe with no writer"
    assert isinstance(raised[0], CorpusError) and str(raised[0]).startswith(f"{pipe}: not a regular file")
    assert "write it to a file first" in str(raised[0])


@pytest.mark.parametrize("location", ["missing.jsonl", "sub/dir/missing", "no such corpus", "a\x00b"])
def test_a_path_that_is_neither_local_nor_a_hub_id_is_not_found(tmp_path: Path, location: str) -> None:
    with pytest.raises(CorpusError) as caught:
        load(tmp_path / location)
    assert str(caught.value).startswith(f"{tmp_path / location}: corpus path not found; pass {SUPPORTED_FORMS}")


def test_an_empty_location_is_refused_rather_than_reading_the_current_folder() -> None:
    with pytest.raises(CorpusError, match="corpus location ' ' is empty"):
        load(" ")


def test_a_corpus_of_blank_documents_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blank.jsonl"
    path.write_text(jsonl([{"text": ""}, {"text": None}, {"text": "  "}]), encoding="utf-8")
    with pytest.raises(CorpusError, match=r"blank.jsonl has no non-empty documents \(3 empty or blank\)"):
        load(path)


def test_the_embedded_corpus_is_the_default() -> None:
    corpus = load_corpus(CorpusSource())
    path = str(embedded_corpus_path())
    assert corpus.location == path and corpus.origins == ((path, 3000),) and corpus.n_empty == 0
    assert len(corpus.texts) == 3000 and corpus.texts[0].startswith("They were soon gone again")
