"""Read a corpus of documents from a .jsonl file, a .txt file or a folder of .txt files.

Documents are returned exactly as read, empty ones included: the caller decides what to skip and
counts it. Every failure is a ``CorpusError`` that names the file (and the line or byte offset)
and says how to fix it. Stdlib only, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SUPPORTED_FORMS = (
    "a .jsonl file (one JSON object per line with a string field \"text\"), "
    "a .txt file (one document per blank-line-separated paragraph), "
    "or a folder of .txt files (read in file-name order)"
)
_UTF8_BOM = "\ufeff"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "a boolean", type(None): "null"}


class CorpusError(ValueError):
    """A corpus could not be read; the message names the path and how to fix it."""


def read_documents(path: str | os.PathLike[str]) -> list[str]:
    """All documents of the corpus at ``path``, in order (see the module docstring for forms)."""
    path = Path(path)
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as error:
        raise CorpusError(
            f"{path}: cannot access the corpus path ({error.strerror}); check the path"
        ) from error
    if is_dir:
        return [doc for file in _txt_files(path) for doc in _paragraphs(_read_text(file))]
    if not exists:
        raise CorpusError(f"{path}: corpus path not found; pass {SUPPORTED_FORMS}")
    if not path.is_file():
        # A pipe would block with no writer, and would be empty for the second task that reads it.
        raise CorpusError(
            f"{path}: not a regular file (a pipe, socket or device); every task of a run reads the "
            "corpus, so write it to a file first and pass that file"
        )
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_documents(path, _read_text(path))
    if suffix == ".txt":
        return _paragraphs(_read_text(path))
    form = suffix or "(no suffix)"
    raise CorpusError(f"{path}: unsupported corpus form {form!r}; pass {SUPPORTED_FORMS}")


def embedded_corpus_path() -> Path:
    """The shipped default corpus: 3000 sentences from Jane Austen's novels (tasks/data/README.md).

    Installed, it is package data of ``nextlaw_task.tasks`` (the top-level ``tasks/`` folder);
    in a checkout without that package it is read from ``<repo root>/tasks/data``.
    """
    from importlib.resources import files  # imported here to keep importing this module cheap

    try:
        data = files("nextlaw_task.tasks") / "data"
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "tasks" / "data" / "austen_sentences.jsonl"
    return Path(str(data / "austen_sentences.jsonl"))


def _txt_files(folder: Path) -> list[Path]:
    """The folder's ``*.txt`` files (any case of the suffix), sorted by name."""
    try:
        files = [p for p in folder.iterdir() if p.suffix.lower() == ".txt" and p.is_file()]
    except OSError as error:
        raise CorpusError(
            f"{folder}: cannot list the folder ({error.strerror}); check its permissions"
        ) from error
    if not files:
        raise CorpusError(f"{folder}: folder has no .txt files; put the documents in *.txt files "
                          f"there or pass {SUPPORTED_FORMS}")
    return sorted(files, key=lambda p: p.name)


def _read_text(path: Path) -> str:
    """The file decoded as UTF-8 (a leading byte-order mark is dropped)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"{path}: cannot read the file ({error.strerror or error}); "
                          "check that it exists and is readable") from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        source = "UTF-16" if data[:2] in _UTF16_BOMS else "LATIN1"
        raise CorpusError(
            f"{path}: not valid UTF-8 at byte offset {error.start}; re-encode the file as UTF-8, "
            f"e.g. iconv -f {source} -t UTF-8 {path} > fixed{path.suffix} "
            "(name the file's real encoding)"
        ) from error
    return text.removeprefix(_UTF8_BOM)


def _paragraphs(text: str) -> list[str]:
    """Blank-line-separated paragraphs; each paragraph's stripped lines joined by single spaces."""
    documents: list[str] = []
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped:
            lines.append(stripped)
        elif lines:
            documents.append(" ".join(lines))
            lines = []
    if lines:
        documents.append(" ".join(lines))
    return documents


def _jsonl_documents(path: Path, text: str) -> list[str]:
    """The "text" field of every non-blank line; any malformed line is a CorpusError."""
    documents: list[str] = []
    # Split on "\n" only: JSON may hold U+2028 and similar characters raw inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as error:
            raise CorpusError(f"{where}: not valid JSON ({error}); each line must be one object "
                              'like {"text": "..."}') from error
        if not isinstance(record, dict):
            raise CorpusError(f"{where}: expected a JSON object with a string field \"text\", "
                              f"got {_JSON_TYPES[type(record)]}")
        document = record.get("text")
        if not isinstance(document, str):
            if "text" in record:
                found = f'"text" is {_JSON_TYPES[type(document)]}'
            else:
                found = 'no "text" field'
            raise CorpusError(f"{where}: expected a string field \"text\", found {found}")
        try:
            document.encode("utf-8")
        except UnicodeEncodeError as error:
            raise CorpusError(
                f"{where}: \"text\" holds an unpaired surrogate escape at character "
                f"{error.start}, which is not Unicode text; fix or drop that line"
            ) from error
        documents.append(document)
    return documents
