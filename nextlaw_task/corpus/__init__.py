"""The corpus: documents read from a file, a folder, a ``save_to_disk`` folder or a Hub dataset.

:func:`load_corpus` reads a :class:`CorpusSource` into a :class:`Corpus`: the non-blank documents
(sampled if asked), how many blank ones were skipped, and which file or dataset each came from.
Forms (:data:`SUPPORTED_FORMS`; a file's form is decided by its suffix, case-insensitive):

- ``.txt``: one document per blank-line-separated paragraph, its lines joined by spaces;
- ``.jsonl`` / ``.jsonl.gz``: one JSON object per line, the text in ``text_field``;
- ``.json`` / ``.json.gz``: a JSON array of such objects, or JSON lines;
- ``.csv``: a header row, the text in the ``text_field`` column;
- ``.parquet``: the ``text_field`` column;
- a folder saved with ``datasets``' ``save_to_disk`` (a ``DatasetDict`` picks ``split``, else its
  only split, else ``train``);
- any other folder: all of the above under it, sub-folders included, in the order of their
  relative POSIX paths sorted as strings; hidden names skipped, other files skipped with a warning;
- a Hub dataset id (``name`` or ``owner/name``) that is no local path: ``datasets.load_dataset``.

A null or missing text value is a blank document; any other non-string is an error. Every failure
is a :class:`CorpusError` naming the file (and line, record or row) and the fix. Importing this
package loads only the standard library; ``datasets`` and ``pyarrow`` load when a form needs them.
:func:`read_documents` is the original reader of .jsonl, .txt and flat folders of .txt files.
"""

from __future__ import annotations

from .common import SUPPORTED_FORMS, Corpus, CorpusError, CorpusSource
from .documents import read_documents
from .load import embedded_corpus_path, load_corpus

__all__ = [
    "SUPPORTED_FORMS",
    "Corpus",
    "CorpusError",
    "CorpusSource",
    "embedded_corpus_path",
    "load_corpus",
    "read_documents",
]
