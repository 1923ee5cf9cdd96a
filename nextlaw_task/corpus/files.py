"""Text files: decoding (UTF-8, optionally gzip), .txt paragraphs and the JSON forms.

Every failure is a ``CorpusError`` that names the file (and the line, record or byte offset)
and says how to fix it. Stdlib only.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .common import CorpusError, Documents, corpus_suffix, describe, first_line, missing_field_error, text_value

_UTF8_BOM = "\ufeff"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_MAX_LISTED_FIELDS = 20


def check_regular_file(path: Path) -> None:
    """Refuse pipes, sockets and devices before opening them (a pipe would block)."""
    if not path.is_file():
        # A pipe would block with no writer, and would be empty for the second task that reads it.
        raise CorpusError(
            f"{path}: not a regular file (a pipe, socket or device); every task of a run reads the "
            "corpus, so write it to a file first and pass that file"
        )


def read_text(path: Path, compressed: bool = False) -> str:
    """The file decoded as UTF-8 (gunzipped first if ``compressed``; a leading BOM is dropped)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"{path}: cannot read the file ({error.strerror or error}); "
                          "check that it exists and is readable") from error
    if compressed:
        data = _gunzip(path, data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        source = "UTF-16" if data[:2] in _UTF16_BOMS else "LATIN1"
        fixed = f"fixed{corpus_suffix(path.name) or path.suffix}"
        command = (f"gunzip -c {path} | iconv -f {source} -t UTF-8 | gzip > {fixed}" if compressed
                   else f"iconv -f {source} -t UTF-8 {path} > {fixed}")
        where = " (after decompressing)" if compressed else ""
        raise CorpusError(
            f"{path}: not valid UTF-8 at byte offset {error.start}{where}; re-encode the file as UTF-8, "
            f"e.g. {command} (name the file's real encoding)"
        ) from error
    return text.removeprefix(_UTF8_BOM)


def _gunzip(path: Path, data: bytes) -> bytes:
    """The decompressed bytes of a gzip file."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise CorpusError(
            f"{path}: not a valid gzip file ({first_line(error)}); compress it with gzip, or drop the "
            ".gz suffix if it is not compressed"
        ) from error


def paragraphs(text: str) -> list[str]:
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


def jsonl_documents(path: Path, text: str, field: str = "text", strict: bool = False) -> Documents:
    """The ``field`` string of every non-blank line, one JSON object per line.

    Lenient (``load_corpus``): a null or missing value is a blank document, but a file where no
    record has the field is an error. ``strict`` (``read_documents``): both are errors.
    """
    return _record_texts(_json_lines(path, text, field), path, field, strict)


def json_documents(path: Path, text: str, field: str = "text") -> Documents:
    """A .json file: one JSON array of objects, or JSON lines (decided by a leading ``[``)."""
    if text.lstrip().startswith("["):
        return _record_texts(_json_array(path, text, field), path, field, strict=False)
    return jsonl_documents(path, text, field)


def _json_lines(path: Path, text: str, field: str) -> Iterator[tuple[str, Any]]:
    """(where, parsed value) of every non-blank line."""
    # Split on "\n" only: JSON may hold U+2028 and similar characters raw inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as error:
            raise CorpusError(f"{where}: not valid JSON ({error}); each line must be one object "
                              f'like {{"{field}": "..."}}') from error
        yield where, record


def _json_array(path: Path, text: str, field: str) -> Iterator[tuple[str, Any]]:
    """(where, element) of a file holding one JSON array; ``where`` names the 0-based index."""
    fix = f'a .json file is one array of objects like [{{"{field}": "..."}}] or one object per line'
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise CorpusError(f"{path}, line {error.lineno}: not valid JSON ({error.msg} at column "
                          f"{error.colno}); {fix}") from error
    except (ValueError, RecursionError) as error:
        raise CorpusError(f"{path}: not valid JSON ({error}); {fix}") from error
    return ((f"{path}, record {index}", record) for index, record in enumerate(records))


def _record_texts(records: Iterable[tuple[str, Any]], path: Path, field: str, strict: bool) -> Documents:
    """The ``field`` value of every JSON record (see :func:`jsonl_documents` for the rules)."""
    documents: Documents = []
    found = False
    fields: dict[str, None] = {}  # the fields seen, in order, for the no-such-field message
    for where, record in records:
        if not isinstance(record, dict):
            raise CorpusError(f'{where}: expected a JSON object with a string field "{field}", '
                              f"got {describe(record)}")
        if field in record:
            found = True
        elif strict:
            raise CorpusError(f'{where}: expected a string field "{field}", found no "{field}" field')
        elif not found and len(fields) < _MAX_LISTED_FIELDS:
            fields.update(dict.fromkeys(record))
        value = record.get(field)
        if strict and value is None:
            raise CorpusError(f'{where}: expected a string field "{field}", found "{field}" is null')
        documents.append(text_value(value, where, field))
    if documents and not found:
        raise missing_field_error(str(path), field, fields)
    return documents
