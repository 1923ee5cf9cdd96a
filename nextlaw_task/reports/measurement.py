"""What a nextlaw row measured on: the corpus and the options, read from a results file's configs.

Results files of 0.3 and later hold ``configs[task]["metadata"]["measurement"]``: the corpus (a
path, a Hub id or ``embedded``), its sha256 and every option resolved (the task's ``measure`` and
``target``, each ``nextlaw_*`` key). Older files
hold only the ``nextlaw_*`` keys the user gave (lm-eval merges ``--metadata`` and ``--model_args``
into each task's metadata); their corpus is ``nextlaw_data``, or ``embedded`` when it is absent.
``nextlaw_data`` is the corpus's, not an option here: the same corpus (by sha256) read from
another path is the same measurement.

Two rows measured the same thing when their :attr:`Measurement.identity` (the corpus's sha256, or
its location where no sha256 is known, and the options), document count and token count agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from nextlaw_task.corpus.common import corpus_suffix

if TYPE_CHECKING:
    from nextlaw_task.reports.results import NextlawRow

EMBEDDED = "embedded"
#: the option that names the corpus: the corpus's identity, not one of the options
CORPUS_OPTION = "nextlaw_data"
#: hex digits of the sha256 that a corpus label shows
SHA_DIGITS = 8


@dataclass(frozen=True)
class Measurement:
    """The corpus a row was measured on (location, and sha256 where the file says) and its options."""

    corpus: str = EMBEDDED
    corpus_sha256: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: every option resolved (a 0.3 file); False: only the options the user gave (an older file)
    recorded: bool = False

    @property
    def options_json(self) -> str:
        """The options as canonical JSON text (keys sorted), for keys and CSV cells."""
        return json.dumps(dict(self.options), sort_keys=True, default=str)

    @property
    def identity(self) -> tuple[str, str]:
        """(corpus identity, options): the sha256 names the corpus where known, else its location."""
        return (f"sha256:{self.corpus_sha256}" if self.corpus_sha256 else self.corpus, self.options_json)

    @property
    def corpus_label(self) -> str:
        """Short corpus name: a file or folder name, a Hub id or ``embedded``, ``@`` the sha's first digits."""
        name = short_name(self.corpus)
        return f"{name}@{self.corpus_sha256[:SHA_DIGITS]}" if self.corpus_sha256 else name


def read_measurement(config: Any) -> Measurement:
    """The measurement of one task from ``configs[task]``; ValueError when it is malformed."""
    metadata = config.get("metadata") if isinstance(config, dict) else None
    if not isinstance(metadata, dict):
        return Measurement()
    if "measurement" not in metadata:
        options = {k: v for k, v in metadata.items() if str(k).startswith("nextlaw_") and k != CORPUS_OPTION}
        return Measurement(str(metadata.get(CORPUS_OPTION) or EMBEDDED), None, dict(sorted(options.items())))
    found = metadata["measurement"]
    if not isinstance(found, dict) or not isinstance(found.get("options", {}), dict):
        raise ValueError(f"metadata 'measurement' is not a mapping with an 'options' mapping: {found!r}")
    sha = found.get("corpus_sha256")
    return Measurement(
        str(found.get("corpus") or EMBEDDED),
        str(sha) if sha else None,
        {k: v for k, v in sorted(found.get("options", {}).items()) if k != CORPUS_OPTION},
        recorded=True,
    )


def short_name(location: str) -> str:
    """A model or corpus as people name it: a local path's last part, a Hub id (``owner/name``) as is."""
    if _is_path(location):
        return PurePosixPath(location.replace("\\", "/").rstrip("/")).name or location
    return location


def short_labels(names: Iterable[str]) -> dict[str, str]:
    """Each name's :func:`short_name`, local paths lengthened by parent folders until no two agree."""
    names = list(dict.fromkeys(names))
    depth = dict.fromkeys(names, 1)
    while True:
        labels = {name: _tail(name, depth[name]) for name in names}
        clashes = {n for n in names if _is_path(n) and sum(labels[m] == labels[n] for m in names) > 1}
        grow = {n for n in clashes if _tail(n, depth[n] + 1) != labels[n]}
        if not grow:
            return labels
        for name in grow:
            depth[name] += 1


def run_suffixes(rows: Sequence[NextlawRow]) -> list[str]:
    """Per row, what tells it from other rows of its model and task (corpus, docs, tokens, options); often ''.

    Empty where the row is the only one of its (model, task); else the measurement fields whose
    values differ within that group, e.g. ``austen.jsonl@1a2b3c4d, max_tokens=256``.
    """
    groups: dict[tuple[str, str], list[NextlawRow]] = {}
    for row in rows:
        groups.setdefault((row.model_label, row.task), []).append(row)
    suffixes = []
    for row in rows:
        group = groups[(row.model_label, row.task)]
        parts = [] if len(group) == 1 else _differences(row, group)
        suffixes.append(", ".join(parts))
    return suffixes


def varying_options(rows: Iterable[NextlawRow]) -> list[str]:
    """The option names whose values differ between rows that recorded every option (absent reads as null)."""
    rows = [row for row in rows if row.measurement.recorded]
    names = sorted({name for row in rows for name in row.measurement.options})
    return [n for n in names if len({json.dumps(r.measurement.options.get(n), default=str) for r in rows}) > 1]


def options_label(options: Mapping[str, Any], names: Iterable[str]) -> str:
    """``max_tokens=256, layers=all``: the named options, ``nextlaw_`` left off."""
    return ", ".join(f"{name.removeprefix('nextlaw_')}={options.get(name, '')}" for name in names)


def options_text(measurement: Measurement, varying: Iterable[str]) -> str:
    """A row's options for a table: the ``varying`` ones where all were recorded, else those the user gave."""
    if measurement.recorded:
        return options_label(measurement.options, varying)
    return options_label(measurement.options, measurement.options) or "not recorded"


def options_differ(rows: Iterable[NextlawRow]) -> bool:
    """Whether the rows' options are not all the same (an older file's count as its own)."""
    return len({row.measurement.options_json for row in rows}) > 1


def _differences(row: NextlawRow, group: Sequence[NextlawRow]) -> list[str]:
    parts = []
    if len({r.measurement.identity[0] for r in group}) > 1:
        parts.append(row.measurement.corpus_label)
    for label, attr in (("docs", "n_docs"), ("tokens", "n_tokens")):
        if len({repr(getattr(r, attr)) for r in group}) > 1:
            parts.append(f"{label}={_count(getattr(row, attr))}")
    options = options_text(row.measurement, varying_options(group)) if options_differ(group) else ""
    return parts + ([options] if options else [])


def _count(value: float) -> str:
    return str(int(value)) if value == value and value.is_integer() else str(value)


def _is_path(location: str) -> bool:
    """A local path rather than a Hub id: absolute, relative with ``.``/``~``, nested, or a corpus file."""
    text = location.replace("\\", "/")
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or corpus_suffix(text) is not None


def _tail(name: str, depth: int) -> str:
    if not _is_path(name):
        return name
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    return "/".join(parts[-depth:]) or name
