"""read_documents, the original reader: its three forms, every error, the shipped corpus, a fuzz test.

The new forms and load_corpus are tested in test_files.py, test_folders.py, test_datasets.py and
test_sample.py next to this file.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextlaw_task.corpus import CorpusError, embedded_corpus_path, read_documents
from nextlaw_task.errors import NextlawError


def test_jsonl_documents_in_order_with_blank_lines_ignored(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "first"}\n\n   \n{"text": "second", "source": "x"}\n', encoding="utf-8")
    assert read_documents(path) == ["first", "second"]


def test_jsonl_keeps_line_separators_inside_strings(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    record = json.dumps({"text": "a\u2028b\u0085c"}, ensure_ascii=False)
    path.write_text(record + "\r\n", encoding="utf-8")
    assert read_documents(str(path)) == ["a\u2028b\u0085c"]


def test_jsonl_returns_empty_and_whitespace_documents(tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": ""}\n{"text": "  "}\n{"text": "x"}\n', encoding="utf-8")
    assert read_documents(path) == ["", "  ", "x"]


def test_txt_paragraphs_join_hard_wraps_and_handle_crlf(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    text = "It is a truth\r\n  universally acknowledged.\r\n\r\n\r\nSecond  paragraph\r\nhere.\r\n"
    path.write_bytes(text.encode("utf-8"))
    assert read_documents(path) == ["It is a truth universally acknowledged.", "Second  paragraph here."]


def test_utf8_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_bytes(b"\xef\xbb\xbfHello there.\n")
    assert read_documents(path) == ["Hello there."]


def test_folder_reads_txt_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("Bee one.\n\nBee two.\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("Ay.\n", encoding="utf-8")
    (tmp_path / "c.TXT").write_text("Cee.\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a document\n", encoding="utf-8")
    (tmp_path / "d.txt").mkdir()
    assert read_documents(tmp_path) == ["Ay.", "Bee one.", "Bee two.", "Cee."]


def test_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jsonl"
    with pytest.raises(CorpusError, match="nowhere.jsonl: corpus path not found"):
        read_documents(missing)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_not_utf8_names_file_and_byte_offset(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"latin{suffix}"
    path.write_bytes('{"text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(CorpusError) as caught:
        read_documents(path)
    message = str(caught.value)
    assert str(path) in message and "byte offset 13" in message and "iconv" in message


def test_utf16_file_suggests_utf16(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_bytes("Hello.\n".encode("utf-16"))
    with pytest.raises(CorpusError, match="byte offset 0.*iconv -f UTF-16"):
        read_documents(path)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('["text"]', "got an array"),
        ('"just a string"', "got a string"),
        ('{"body": "x"}', 'no "text" field'),
        ('{"text": 3}', '"text" is a number'),
        ('{"text": null}', '"text" is null'),
        ('{"text": ["a"]}', '"text" is an array'),
        ('{"text": "\\ud800"}', "unpaired surrogate"),
    ],
)
def test_bad_jsonl_line_is_named_by_number(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fine"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        read_documents(path)
    assert f"{path}, line 3: " in str(caught.value)
    assert expected in str(caught.value)


def test_folder_without_txt_files(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="folder has no .txt files"):
        read_documents(tmp_path)


@pytest.mark.parametrize("name", ["corpus.csv", "corpus"])
def test_unsupported_suffix_lists_supported_forms(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("text\n", encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        read_documents(path)
    message = str(caught.value)
    assert name in message and ".jsonl file" in message and ".txt file" in message
    assert "folder of .txt files" in message


def test_corpus_error_is_a_value_error_and_a_nextlaw_error() -> None:
    assert issubclass(CorpusError, ValueError) and issubclass(CorpusError, NextlawError)


def test_embedded_corpus_has_3000_non_empty_documents() -> None:
    path = embedded_corpus_path()
    assert path.name == "austen_sentences.jsonl" and path.is_file()
    documents = read_documents(path)
    assert len(documents) == 3000
    assert all(document.strip() for document in documents)


# --- fuzz: whatever the bytes, read_documents returns list[str] or raises CorpusError ---------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["text", "source", ""]) | st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
_jsonl_bytes = st.builds(
    lambda values, ascii_only, newline: newline.join(
        json.dumps(value, ensure_ascii=ascii_only) for value in values
    ).encode("utf-8"),
    st.lists(_json_values | st.builds(lambda v: {"text": v}, _json_values), max_size=5),
    st.booleans(),
    st.sampled_from(["\n", "\r\n", "\n\n"]),
)
_encoded_text = st.builds(
    lambda text, encoding: text.encode(encoding, errors="replace"),
    st.text(max_size=200),
    st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252"]),
)
_file_bytes = st.binary(max_size=200) | _encoded_text | _jsonl_bytes


@settings(max_examples=300, deadline=None)
@given(data=_file_bytes, form=st.sampled_from(["docs.jsonl", "docs.txt", "folder"]))
def test_fuzz_returns_strings_or_raises_corpus_error(data: bytes, form: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if form == "folder":
            (root / "part.txt").write_bytes(data)
            path = root
        else:
            path = root / form
            path.write_bytes(data)
        try:
            documents = read_documents(path)
        except CorpusError:
            return
    assert isinstance(documents, list)
    assert all(isinstance(document, str) for document in documents)
