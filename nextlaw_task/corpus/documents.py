"""``read_documents``: the original reader of the three first forms, kept as it was for its callers.

It reads a .jsonl file (every line an object with a string field "text"; a missing or null
"text" is an error), a .txt file, or a flat folder of .txt files (every ``*.txt`` directly in it,
any case of the suffix, hidden ones included, by file name), and returns every document, blank
ones included. :func:`~nextlaw_task.corpus.load.load_corpus` reads every form.
"""

from __future__ import annotations

import os
from pathlib import Path

from .common import CorpusError
from .files import check_regular_file, jsonl_documents, paragraphs, read_text
from .folders import folder_entries, is_file

LEGACY_FORMS = (
    "a .jsonl file (one JSON object per line with a string field \"text\"), "
    "a .txt file (one document per blank-line-separated paragraph), "
    "or a folder of .txt files (read in file-name order)"
)


def read_documents(path: str | os.PathLike[str]) -> list[str]:
    """All documents of the corpus at ``path``, in order, blank ones included."""
    path = Path(path)
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as error:
        raise CorpusError(
            f"{path}: cannot access the corpus path ({error.strerror}); check the path"
        ) from error
    if is_dir:
        return [doc for file in _txt_files(path) for doc in paragraphs(read_text(file))]
    if not exists:
        raise CorpusError(f"{path}: corpus path not found; pass {LEGACY_FORMS}")
    check_regular_file(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        # strict: a missing or null "text" raises, so no None is left
        return [doc for doc in jsonl_documents(path, read_text(path), strict=True) if doc is not None]
    if suffix == ".txt":
        return paragraphs(read_text(path))
    form = suffix or "(no suffix)"
    raise CorpusError(f"{path}: unsupported corpus form {form!r}; pass {LEGACY_FORMS}")


def _txt_files(folder: Path) -> list[Path]:
    """The folder's ``*.txt`` files (any case of the suffix), sorted by name."""
    files = [Path(entry.path) for entry in folder_entries(folder)
             if Path(entry.name).suffix.lower() == ".txt" and is_file(entry)]
    if not files:
        raise CorpusError(f"{folder}: folder has no .txt files; put the documents in *.txt files "
                          f"there or pass {LEGACY_FORMS}")
    return sorted(files, key=lambda p: p.name)
