"""Hugging Face ``datasets``: folders saved with ``save_to_disk`` and Hub dataset ids.

``datasets`` is imported inside the functions that use it, so importing the corpus package stays
cheap. A ``DatasetDict`` picks its split by :func:`pick_split`. Any exception from ``datasets``
becomes one ``CorpusError`` that names the folder or id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .common import CorpusError, Documents, corpus_suffix, first_line, missing_field_error, text_value

# A Hub dataset id: "name" or "owner/name" of ASCII letters, digits and "-_.".
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``folder`` was written by ``save_to_disk`` (the files ``load_from_disk`` checks)."""
    try:
        single = (folder / "dataset_info.json").is_file() and (folder / "state.json").is_file()
        return single or (folder / "dataset_dict.json").is_file()
    except OSError:
        return False


def looks_like_hub_id(location: str) -> bool:
    """Whether ``location`` could be a Hub dataset id (and is no file name of a known form)."""
    return bool(_HUB_ID.fullmatch(location)) and ".." not in location and corpus_suffix(location) is None


def saved_dataset_documents(folder: Path, split: str | None, field: str) -> Documents:
    """The ``field`` column of a ``save_to_disk`` folder (the split picked if it has several)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as error:  # anything datasets raises: a damaged or foreign folder
        raise CorpusError(
            f"{folder}: cannot load this save_to_disk folder ({first_line(error)}); save the dataset "
            "again with save_to_disk, or pass the corpus in another form"
        ) from error
    return dataset_documents(loaded, str(folder), split, field)


def hub_documents(dataset_id: str, split: str | None, field: str) -> Documents:
    """The ``field`` column of a Hub dataset, read with ``datasets.load_dataset``."""
    import datasets

    try:
        if split is None:
            loaded = datasets.load_dataset(dataset_id)
        else:
            loaded = datasets.load_dataset(dataset_id, split=split)
    except Exception as error:  # offline, not found, gated, no such split: all say the same
        raise CorpusError(
            f"{dataset_id}: no local file or folder has this name, and the Hugging Face Hub could "
            f"not provide a dataset of this id ({first_line(error)}); check the id, the network and "
            "your access, or pass a local file or a folder saved with datasets' save_to_disk"
        ) from error
    return dataset_documents(loaded, dataset_id, split, field)


def dataset_documents(loaded: Any, origin: str, split: str | None, field: str) -> Documents:
    """The ``field`` column of a ``Dataset``, or of the picked split of a ``DatasetDict``."""
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded[pick_split(list(loaded), origin, split)]
    if not isinstance(loaded, datasets.Dataset):
        raise CorpusError(f"{origin}: expected a dataset, got {type(loaded).__name__}; pass a "
                          "dataset that datasets loads as a Dataset or DatasetDict")
    if field not in loaded.column_names:
        raise missing_field_error(origin, field, loaded.column_names)
    values = loaded.with_format(None)[field]
    return [text_value(value, f"{origin}, row {index}", field) for index, value in enumerate(values)]


def pick_split(names: list[str], origin: str, split: str | None) -> str:
    """The split to read: ``split`` if given, else the only one, else ``train``."""
    if not names:
        raise CorpusError(f"{origin}: the dataset has no splits; save one with save_to_disk")
    listed = ", ".join(repr(name) for name in names)
    if split is not None:
        if split in names:
            return split
        raise CorpusError(f"{origin}: no split {split!r} (its splits: {listed}); set nextlaw_split "
                          "to one of them")
    if len(names) == 1:
        return names[0]
    if "train" in names:
        return "train"
    raise CorpusError(f"{origin}: several splits ({listed}) and none is 'train'; choose one with "
                      "nextlaw_split")
