"""Local corpora: one file (its form decided by its suffix), a ``save_to_disk`` folder, or a folder.

A plain folder is read recursively: every file of a corpus form and every nested ``save_to_disk``
folder (one source each), in the order of their paths relative to the folder, written with "/"
and sorted as strings (by code point: ``A.txt`` < ``a.txt`` < ``a/b.txt`` < ``b.txt``, since
"." sorts before "/"). Hidden files and folders (a name starting with ".") are skipped silently;
any other file is skipped with one warning that names them. Symbolic links are followed, except
a link to a folder that contains it (which would never end); a folder linked twice is read twice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .common import SUPPORTED_FORMS, CorpusError, Documents, corpus_suffix, listing
from .files import check_regular_file, json_documents, jsonl_documents, paragraphs, read_text
from .hf import is_saved_dataset, saved_dataset_documents
from .tables import csv_documents, parquet_documents

logger = logging.getLogger(__name__)

Source = tuple[str, Documents]
"""(origin, documents): the origin is a path relative to a folder corpus, the file or the id."""


def local_sources(path: Path, split: str | None, field: str) -> list[Source]:
    """The sources of an existing local path: a file, a ``save_to_disk`` folder or a folder."""
    if path.is_dir():
        if is_saved_dataset(path):
            return [(str(path), saved_dataset_documents(path, split, field))]
        return folder_sources(path, split, field)
    return [(str(path), read_file(path, field))]


def read_file(path: Path, field: str) -> Documents:
    """The documents of one file, read by the form its suffix names (case-insensitive)."""
    check_regular_file(path)
    suffix = corpus_suffix(path.name)
    if suffix is None:
        form = path.suffix.lower() or "(no suffix)"
        raise CorpusError(f"{path}: unsupported corpus form {form!r}; pass {SUPPORTED_FORMS}")
    if suffix == ".parquet":
        return parquet_documents(path, field)
    text = read_text(path, compressed=suffix.endswith(".gz"))
    if suffix == ".txt":
        return [*paragraphs(text)]
    if suffix == ".csv":
        return csv_documents(path, text, field)
    if suffix.startswith(".jsonl"):
        return jsonl_documents(path, text, field)
    return json_documents(path, text, field)


def folder_sources(folder: Path, split: str | None, field: str) -> list[Source]:
    """Every source under ``folder`` in the documented order, after one warning for skipped files."""
    found, skipped = scan_folder(folder)
    if not found:
        others = f" (only {len(skipped)} other files: {listing(skipped)})" if skipped else ""
        raise CorpusError(f"{folder}: no corpus file in this folder or its sub-folders{others}; "
                          f"accepted forms: {SUPPORTED_FORMS}")
    if skipped:
        logger.warning("%s: skipped %d file(s) of no corpus form: %s; corpus files end in "
                       ".txt, .jsonl, .jsonl.gz, .json, .json.gz, .csv or .parquet",
                       folder, len(skipped), listing(skipped))
    sources: list[Source] = []
    for relative in found:
        path = folder / relative
        if path.is_dir():
            sources.append((relative, saved_dataset_documents(path, split, field)))
        else:
            sources.append((relative, read_file(path, field)))
    return sources


def scan_folder(folder: Path) -> tuple[list[str], list[str]]:
    """(sources, skipped files) under ``folder``, as sorted relative POSIX paths."""
    sources: list[str] = []
    skipped: list[str] = []
    _scan(folder, "", frozenset(), sources, skipped)
    return sorted(sources), sorted(skipped)


def _scan(directory: Path, prefix: str, ancestors: frozenset[str], sources: list[str], skipped: list[str]) -> None:
    """Add the entries under ``directory`` (named ``prefix`` + name) to ``sources`` or ``skipped``."""
    real = os.path.realpath(directory)
    if real in ancestors:
        return  # a link to a folder that contains it: following it would never end
    for entry in folder_entries(directory):
        if entry.name.startswith("."):
            continue
        relative = prefix + entry.name
        if _is_dir(entry):
            if is_saved_dataset(Path(entry.path)):
                sources.append(relative)
            else:
                _scan(Path(entry.path), relative + "/", ancestors | {real}, sources, skipped)
        elif corpus_suffix(entry.name) and is_file(entry):
            sources.append(relative)
        else:
            skipped.append(relative)


def folder_entries(directory: Path) -> list[os.DirEntry[str]]:
    """The folder's entries; an unreadable folder is a CorpusError."""
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError as error:
        raise CorpusError(
            f"{directory}: cannot list the folder ({error.strerror or error}); check its permissions"
        ) from error


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Whether the entry is a folder (through links); unreadable ones count as files."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def is_file(entry: os.DirEntry[str]) -> bool:
    """Whether the entry is a regular file (through links); pipes, sockets, devices are not."""
    try:
        return entry.is_file()
    except OSError:
        return False
