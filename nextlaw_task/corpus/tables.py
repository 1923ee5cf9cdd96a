"""Tables: .csv files (stdlib ``csv``, header row) and .parquet files (``pyarrow``, imported on use).

The text is one column, ``text_field``; a missing column is an error that lists the columns. An
empty or missing cell is a blank document. Errors name the file and the line (CSV) or the 0-based
row (Parquet).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .common import CorpusError, Documents, first_line, missing_field_error, text_value

# Documents may be whole books: lift csv's default 128 KiB field limit while reading.
_CSV_FIELD_LIMIT = 2**31 - 1


def csv_documents(path: Path, text: str, field: str) -> Documents:
    """The ``field`` column of a CSV file's rows (``text`` is the decoded file).

    The reader is strict, so a stray quote fails at its row instead of swallowing the lines after it.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    with _csv_field_limit():
        header = _next_row(reader, path)
        if header is None:
            raise CorpusError(f"{path}: the CSV file is empty; its first line must be a header row "
                              f"naming the columns, one of them {field!r}")
        if field not in header:
            raise missing_field_error(str(path), field, header)
        column = header.index(field)
        documents: Documents = []
        while (row := _next_row(reader, path)) is not None:
            if row:  # csv yields [] for an empty line: no row there
                documents.append(row[column] if column < len(row) else None)
    return documents


def _next_row(reader: Any, path: Path) -> list[str] | None:
    """The reader's next row, ``None`` at the end; a malformed row names the line it starts on."""
    start = reader.line_num + 1
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as error:
        raise CorpusError(
            f"{path}, line {start}: not valid CSV ({error}, reading up to line {reader.line_num}); "
            'write the file with a CSV writer: quote fields that hold commas, quotes or line breaks, '
            'and double the quotes inside them ("")'
        ) from error


@contextmanager
def _csv_field_limit() -> Iterator[None]:
    """Raise csv's field size limit for the duration, then restore it."""
    previous = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def parquet_documents(path: Path, field: str) -> Documents:
    """The ``field`` column of a Parquet file, read with ``pyarrow.parquet.read_table``."""
    import pyarrow
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        if field not in names:
            raise missing_field_error(str(path), field, names)
        values = pq.read_table(path, columns=[field]).column(field).to_pylist()
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        if isinstance(error, CorpusError):
            raise
        raise CorpusError(f"{path}: not a readable Parquet file ({first_line(error)}); write it with "
                          "pyarrow or pandas, or pass the corpus in another form") from error
    return [text_value(value, f"{path}, row {index}", field) for index, value in enumerate(values)]
