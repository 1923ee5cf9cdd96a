"""What every corpus reader shares: the error, the accepted forms, the source and the result.

A reader turns one source (a file, a ``save_to_disk`` folder, a Hub dataset) into
:data:`Documents`: one entry per document, ``None`` where a row has no text value (counted blank
later). Stdlib only, like the whole package at import time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nextlaw_task.errors import NextlawError

SUPPORTED_FORMS = (
    "a .txt file (one document per blank-line-separated paragraph); a .jsonl or .json file (JSON "
    "lines, or a JSON array of objects; also gzip-compressed as .jsonl.gz or .json.gz), a .csv file "
    "with a header row, or a .parquet file, with the text in the field or column named by "
    'nextlaw_text_field (default "text"); a folder saved with datasets\' save_to_disk; a folder of '
    "such files and folders (sub-folders included); or a Hugging Face Hub dataset id (name or owner/name)"
)
# Longest first: ".jsonl.gz" must win over a bare ".gz" (which is no form).
FILE_SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".txt", ".csv", ".parquet")

Documents = list[str | None]
"""One source's documents in reading order; ``None`` marks a row without a text value."""

_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number",
               float: "a number", bool: "a boolean", type(None): "null"}


class CorpusError(NextlawError, ValueError):
    """A corpus could not be read; the message names the path and how to fix it."""


@dataclass(frozen=True)
class CorpusSource:
    """Where the documents come from and which of them to measure.

    ``location``: ``None`` for the embedded corpus, else a local file or folder or a Hub dataset
    id. ``split`` is used by datasets with splits (``save_to_disk`` folders, Hub ids) and ignored
    by other sources. ``sample``: draw this many documents (``None``: all) with ``seed``.
    """

    location: str | None = None
    split: str | None = None
    text_field: str = "text"
    sample: int | None = None
    seed: int = 666


@dataclass(frozen=True)
class Corpus:
    """The documents to measure and where they came from.

    ``texts``: the non-blank documents after sampling, in order. ``n_empty``: blank documents
    (empty, whitespace-only or without a value) skipped over the whole corpus. ``origins``:
    (file relative to a folder corpus, the file or the dataset id; documents read from it,
    blank ones included), in reading order. ``location``: what was read, for messages.
    """

    texts: tuple[str, ...]
    n_empty: int
    origins: tuple[tuple[str, int], ...]
    location: str


def corpus_suffix(name: str) -> str | None:
    """The corpus form a file name ends with (case-insensitive), or ``None`` if none."""
    lowered = name.lower()
    return next((suffix for suffix in FILE_SUFFIXES if lowered.endswith(suffix)), None)


def describe(value: Any) -> str:
    """A value's type in words, JSON's names where they apply ("a number", "null", "a bytes")."""
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def text_value(value: Any, where: str, field: str) -> str | None:
    """A row's text: a string is a document, ``None`` is blank, any other value a CorpusError."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise CorpusError(f'{where}: expected a string field "{field}", found "{field}" is {describe(value)}')
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise CorpusError(
            f'{where}: "{field}" holds an unpaired surrogate escape at character {error.start}, '
            "which is not Unicode text; fix or drop that record"
        ) from error
    return value


def missing_field_error(where: str, field: str, present: Iterable[str]) -> CorpusError:
    """The error for a text field or column that a source does not have; lists what it has."""
    names = ", ".join(repr(name) for name in present) or "none"
    return CorpusError(
        f"{where}: no field or column {field!r} (it has: {names}); set nextlaw_text_field "
        "to the one that holds the text"
    )


def listing(names: list[str], limit: int = 5) -> str:
    """The first ``limit`` names joined by commas, then "..." if there are more."""
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def first_line(error: BaseException) -> str:
    """``ClassName: first line of the message``, for errors raised by other libraries."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
