"""``load_corpus``: read a corpus source, drop and count blank documents, draw the sample.

The location is, in this order: ``None`` (the embedded corpus), an existing local path (file or
folder, see :mod:`.folders`), or a Hugging Face Hub dataset id (``name`` or ``owner/name``).
The sample is drawn as the authors drew theirs (and as ``tools/build_corpus.py`` does): shuffle
the non-blank documents' positions with ``random.Random(seed)`` and keep the first ``sample``.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

from .common import SUPPORTED_FORMS, Corpus, CorpusError, CorpusSource
from .folders import Source, local_sources
from .hf import hub_documents, looks_like_hub_id

logger = logging.getLogger(__name__)


def load_corpus(source: CorpusSource) -> Corpus:
    """The documents of ``source`` to measure: non-blank, sampled if asked, with their origins."""
    location = source.location if source.location is not None else str(embedded_corpus_path())
    sources = read_sources(location, source.split, source.text_field)
    kept: list[str] = []
    for origin, documents in sources:
        texts = [document for document in documents if document is not None and document.strip()]
        logger.info("corpus %s: %d documents from %s (%d blank)", location, len(documents), origin,
                    len(documents) - len(texts))
        kept += texts
    n_read = sum(len(documents) for _, documents in sources)
    if not kept:
        raise CorpusError(
            f"corpus {location} has no non-empty documents ({n_read} empty or blank); nextlaw needs "
            "text to measure: put documents in it, or point nextlaw_data at another corpus"
        )
    chosen = draw_sample(kept, source.sample, source.seed, location)
    drawn = "all kept" if source.sample is None else f"{len(chosen)} sampled with seed {source.seed}"
    logger.info("corpus %s: %d documents read, %d blank skipped, %s", location, n_read,
                n_read - len(kept), drawn)
    origins = tuple((origin, len(documents)) for origin, documents in sources)
    return Corpus(texts=tuple(chosen), n_empty=n_read - len(kept), origins=origins, location=location)


def read_sources(location: str, split: str | None, field: str) -> list[Source]:
    """(origin, documents) of every source at ``location``: a local path, else a Hub id."""
    if not location.strip():
        raise CorpusError(f"corpus location {location!r} is empty; pass {SUPPORTED_FORMS}")
    path = Path(location)
    try:
        exists = path.exists()
    except OSError as error:
        raise CorpusError(
            f"{path}: cannot access the corpus path ({error.strerror or error}); check the path"
        ) from error
    if exists:
        return local_sources(path, split, field)
    if not os.path.lexists(location) and looks_like_hub_id(location):
        return [(location, hub_documents(location, split, field))]
    raise CorpusError(f"{path}: corpus path not found; pass {SUPPORTED_FORMS}")


def draw_sample(kept: list[str], sample: int | None, seed: int, location: str) -> list[str]:
    """``kept`` itself, or the first ``sample`` of its positions shuffled by ``Random(seed)``."""
    if sample is None:
        return kept
    if not 1 <= sample <= len(kept):
        raise CorpusError(
            f"nextlaw_sample={sample}: corpus {location} has {len(kept)} non-blank documents; set "
            f"nextlaw_sample between 1 and {len(kept)}, or leave it out to measure them all"
        )
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    return [kept[index] for index in order[:sample]]


def embedded_corpus_path() -> Path:
    """The shipped default corpus: 3000 sentences from Jane Austen's novels (tasks/data/README.md).

    Installed, it is package data of ``nextlaw_task.tasks`` (the top-level ``tasks/`` folder);
    in a checkout without that package it is read from ``<repo root>/tasks/data``.
    """
    from importlib.resources import files  # imported here to keep importing this module cheap

    try:
        data = files("nextlaw_task.tasks") / "data"
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parent.parent.parent
        return root / "tasks" / "data" / "austen_sentences.jsonl"
    return Path(str(data / "austen_sentences.jsonl"))
