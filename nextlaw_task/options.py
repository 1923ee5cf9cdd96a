"""The measurement a nextlaw task asks for, from its YAML and the user's ``--metadata``.

A task's YAML fixes what it measures (``dataset_kwargs``: ``measure``, ``target``, ``folds``);
the user tunes how, for every nextlaw task of a run, with ``nextlaw_*`` keys in ``--metadata``
(or ``--model_args``, which the harness merges into the same metadata). Every key is one entry
of :data:`OPTIONS` (name, parser, default, help): :func:`build_spec`, the unknown-key message and
the README's options table (:func:`options_table`) all come from it.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nextlaw_task.corpus import CorpusSource
from nextlaw_task.errors import NextlawError
from nextlaw_task.schema import HELDOUT_MEASURES, MEASURES, NORMALIZATIONS, PRECISIONS, TARGETS, Target, resolve_state

logger = logging.getLogger(__name__)


#: Jackknife groups of documents unless ``nextlaw_jackknife_groups`` says otherwise.
DEFAULT_JACKKNIFE_GROUPS = 10


class OptionError(NextlawError, ValueError):
    """A nextlaw option has a value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class MeasurementSpec:
    """Everything the model wrapper needs to measure one task; hashable, so tasks can share."""

    task: str
    measure: str = "id"
    target: str = "next"
    folds: int = 0
    normalize: str = "initialized_ln"
    max_tokens: int = 512
    layers: str = "all"
    law_first: int = 1
    law_last: int = -1
    seed: int = 666
    data: str | None = None
    split: str | None = None
    text_field: str = "text"
    sample: int | None = None
    memory_budget: int | None = None
    jackknife_groups: int = DEFAULT_JACKKNIFE_GROUPS
    precision: str = "float64"

    def states(self, n_layers: int) -> tuple[int, ...]:
        """The state indices measured for a model with ``n_layers`` blocks (states 0..L)."""
        return parse_layers(self.layers, n_layers)

    def law_states(self, n_layers: int) -> tuple[int, int]:
        """(first, last) state of the law's fit, negative values counted back from L as everywhere."""
        return resolve_state(self.law_first, n_layers), resolve_state(self.law_last, n_layers)

    def record(self) -> dict[str, Any]:
        """Every setting that shapes the numbers, under its ``--metadata`` key (the memory budget, which
        only decides how many passes are made, is left out), for the results file."""
        shaping = {o.key: getattr(self, o.field) for o in OPTIONS if o.key != "nextlaw_memory_budget"}
        return {"measure": self.measure, "target": self.target, **shaping}

    def corpus_source(self) -> CorpusSource:
        """Where the documents come from: the corpus, its split and text field, the sample drawn."""
        return CorpusSource(self.data, self.split, self.text_field, self.sample, self.seed)

    @property
    def positions(self) -> Target:
        """Which positions are samples and which token each predicts."""
        return TARGETS[self.target]


def parse_layers(text: str, n_layers: int) -> tuple[int, ...]:
    """``all`` | ``every:K`` | comma-separated indices (negative counts back from L) -> sorted states."""
    text = str(text).strip().lower()
    last = n_layers
    if text == "all":
        return tuple(range(last + 1))
    if text.startswith("every:"):
        step = _as_int("nextlaw_layers", text.removeprefix("every:"))
        if step < 1:
            raise OptionError(f"nextlaw_layers={text!r}: the step after 'every:' must be >= 1")
        chosen = set(range(0, last + 1, step)) | {last}
        return tuple(sorted(chosen))
    chosen = set()
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        index = resolve_state(_as_int("nextlaw_layers", part), n_layers)
        if not 0 <= index <= last:
            raise OptionError(
                f"nextlaw_layers={text!r}: state {part.strip()} is outside 0..{last} "
                f"(this model has {n_layers} layers, so states 0..{last})"
            )
        chosen.add(index)
    if not chosen:
        raise OptionError(f"nextlaw_layers={text!r}: use 'all', 'every:4' or indices like '0,4,8'")
    return tuple(sorted(chosen))


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise OptionError(f"{key}={value!r}: expected an integer")
    try:
        return int(str(value).strip())
    except ValueError:
        raise OptionError(f"{key}={value!r}: expected an integer") from None


def _as_path(key: str, value: Any) -> str:
    """A non-empty path (``~`` expanded) or dataset id; an empty one would silently read the current folder."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise OptionError(
            f"{key}={value!r}: expected a corpus: a file ({CORPUS_SUFFIXES}), a folder of them, a folder saved "
            "with datasets' save_to_disk, or a Hugging Face dataset id; leave the key out for the embedded corpus"
        )
    try:
        return str(Path(value).expanduser())
    except (RuntimeError, ValueError) as error:  # an unknown ~user, a NUL character
        raise OptionError(f"{key}={value!r}: not a usable path ({error}); pass an absolute path") from None


def _as_name(key: str, value: Any) -> str:
    """A non-empty name (a split, a field)."""
    if not isinstance(value, str) or not value.strip():
        raise OptionError(f"{key}={value!r}: expected a non-empty name")
    return value.strip()


def _as_sample(key: str, value: Any) -> int:
    count = _as_int(key, value)
    if count < 1:
        raise OptionError(f"{key}={count}: draw at least 1 document, or leave the key out to measure them all")
    return count


def _as_max_tokens(key: str, value: Any) -> int:
    tokens = _as_int(key, value)
    if tokens < 3:
        raise OptionError(f"{key}={tokens}: must be at least 3 tokens")
    return tokens


def _as_layers(key: str, value: Any) -> str:
    text = str(value)
    parse_layers(text, 10**6)  # syntax check now; range check once L is known
    return text


def _as_normalization(key: str, value: Any) -> str:
    how = str(value).strip().lower()
    if how not in NORMALIZATIONS:
        raise OptionError(f"{key}={value!r}: choose one of {', '.join(NORMALIZATIONS)}")
    return how


def _as_precision(key: str, value: Any) -> str:
    precision = str(value).strip().lower()
    if precision not in PRECISIONS:
        raise OptionError(f"{key}={value!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


def _as_seed(key: str, value: Any) -> int:
    seed = _as_int(key, value)
    if not 0 <= seed < 2**64:
        raise OptionError(f"{key}={seed}: the seed must be an integer from 0 to 2**64 - 1")
    return seed


def _as_groups(key: str, value: Any) -> int:
    groups = _as_int(key, value)
    if groups == 1 or groups < 0:
        raise OptionError(f"{key}={groups}: use 0 (no standard errors) or G >= 2 jackknife groups")
    return groups


#: The corpus file forms, for messages and the options table.
CORPUS_SUFFIXES = "`.txt`, `.jsonl`, `.jsonl.gz`, `.json`, `.csv`, `.parquet`"

UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_bytes(key: str, value: Any) -> int:
    """``8GiB``, ``500MB``, ``1e9`` or a plain number of bytes -> bytes (a positive integer)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(value).lower())
    size = float(match.group(1)) * UNITS.get(match.group(2), math.nan) if match else math.nan
    if isinstance(value, bool) or not (math.isfinite(size) and size >= 1):
        raise OptionError(f"{key}={value!r}: expected a size such as 8GiB, 500MB or 1e9 (bytes)")
    return int(size)


def format_bytes(size: int) -> str:
    """``9.0 KiB``, ``4.4 GiB``: a byte count for log lines and messages (the inverse of parse_bytes)."""
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"


@dataclass(frozen=True)
class Option:
    """One ``nextlaw_*`` key: the spec field it sets, how its value is read, its default and help."""

    key: str
    field: str
    parse: Callable[[str, Any], Any]
    default: str
    help: str


OPTIONS: tuple[Option, ...] = (
    Option("nextlaw_data", "data", _as_path, "embedded Austen sentences",
           f"the corpus: a file ({CORPUS_SUFFIXES}), a folder of them (sub-folders too), a folder saved with "
           "`save_to_disk`, or a Hugging Face dataset id"),
    Option("nextlaw_split", "split", _as_name, "the only split, else `train`",
           "the split of a dataset with splits (a `save_to_disk` folder or a Hub id)"),
    Option("nextlaw_text_field", "text_field", _as_name, "`text`", "the field or column that holds the text"),
    Option("nextlaw_sample", "sample", _as_sample, "all documents",
           "draw this many documents: the non-blank documents shuffled with `nextlaw_seed`, the first N kept"),
    Option("nextlaw_max_tokens", "max_tokens", _as_max_tokens, "512", "truncate each document to this many tokens"),
    Option("nextlaw_layers", "layers", _as_layers, "`all`",
           "states measured: `all`, `0,4,8` (negative counts back from L: -1 = L) or `every:4`"),
    Option("nextlaw_normalize", "normalize", _as_normalization, "`initialized_ln`",
           f"per-token normalization of the states: {', '.join(f'`{n}`' for n in NORMALIZATIONS)}"),
    Option("nextlaw_folds", "folds", _as_int, "task's YAML",
           "K-fold held-out PR, folds split by document (0 = in-sample)"),
    Option("nextlaw_law_first", "law_first", _as_int, "1",
           "first state of the law's fit (negative counts back from L: -1 = L)"),
    Option("nextlaw_law_last", "law_last", _as_int, "-1 (= L)",
           "last state of the law's fit (negative counts back from L: -1 = L, -2 = L - 1)"),
    Option("nextlaw_seed", "seed", _as_seed, "666",
           "seed of the document sample and of the vocabulary permutation of `nextlaw_shuffled_id`, 0 .. 2**64 - 1"),
    Option("nextlaw_jackknife_groups", "jackknife_groups", _as_groups, "10",
           "standard errors by a delete-one-group jackknife over documents in G groups (document index % G); "
           "0 turns them off (so does `bootstrap_iters=0` in `simple_evaluate`)"),
    Option("nextlaw_precision", "precision", _as_precision, "`float64`",
           "`fast`: the Gram updates of in-sample `id` / `shuffled_id` tasks from float32 products (TF32 tensor "
           "cores on a GPU); each state's PR deviation from float64 is checked on a float64 sample of the rows, "
           "logged, and a state over 1e-6 is measured again in float64 (one more pass, more if the memory "
           "budget splits them); other tasks and "
           "data-parallel runs stay in float64"),
    Option("nextlaw_memory_budget", "memory_budget", parse_bytes, "GPU: half the free GPU memory; CPU: no limit",
           "memory the float64 statistics may take (`8GiB`, `500MB`); beyond it the states are split into "
           "contiguous ranges that each fit, one pass over the corpus per range (k passes cost about (k+1)/2 "
           "forward passes); on a GPU, if even one state does not fit, the statistics live in CPU memory"),
)
KNOWN_KEYS: tuple[str, ...] = tuple(option.key for option in OPTIONS)
#: The task YAML's ``dataset_kwargs``: what a task measures.
TASK_KEYS: tuple[str, ...] = ("measure", "target", "folds")


def options_table() -> str:
    """The options as the markdown table the README shows (a test keeps the two equal)."""
    lines = ["| `--metadata` key | meaning | default |", "|---|---|---|"]
    lines += [f"| `{o.key}` | {o.help} | {o.default} |" for o in OPTIONS]
    return "\n".join(lines) + "\n"


def _meant(key: str) -> str | None:
    """The known key that ``key`` nearly spells (case, ``-`` for ``_``, a small slip), else None."""
    if key in KNOWN_KEYS:
        return None
    folded = key.strip().lower().replace("-", "_").replace(" ", "_")
    if folded in KNOWN_KEYS:
        return folded
    if not folded.startswith("nextlaw"):
        return None
    close = difflib.get_close_matches(folded, KNOWN_KEYS, n=1, cutoff=0.85)
    return close[0] if close else None


def check_near_misses(metadata: Mapping[str, Any]) -> None:
    """Refuse keys that nearly spell a known ``nextlaw_*`` key: ignored, the run would measure the defaults."""
    slips = {str(key): meant for key in metadata if (meant := _meant(str(key))) is not None}
    if slips:
        listed = "; ".join(f"{key!r} (did you mean {meant!r}?)" for key, meant in sorted(slips.items()))
        raise OptionError(
            f"unknown nextlaw option {listed}: nextlaw reads each key only as its options table spells it, "
            "so this run would measure the defaults instead; correct the spelling"
        )


def build_spec(task: str, task_kwargs: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> MeasurementSpec:
    """Combine a task's YAML settings with the run's ``nextlaw_*`` metadata, validating both."""
    task_kwargs = dict(task_kwargs or {})
    spec = MeasurementSpec(
        task=task,
        measure=str(task_kwargs.pop("measure", "id")),
        target=str(task_kwargs.pop("target", "next")),
        folds=_as_int("folds", task_kwargs.pop("folds", 0)),
    )
    if task_kwargs:
        raise OptionError(f"task {task}: unknown dataset_kwargs {sorted(task_kwargs)}; known: {', '.join(TASK_KEYS)}")
    if spec.measure not in MEASURES:
        raise OptionError(f"task {task}: measure {spec.measure!r} is not one of {', '.join(MEASURES)}")
    if spec.target not in TARGETS:
        raise OptionError(f"task {task}: target {spec.target!r} is not one of {', '.join(TARGETS)}")

    check_near_misses(metadata or {})
    meta = {k: v for k, v in (metadata or {}).items() if str(k).startswith("nextlaw_")}
    unknown = sorted(set(meta) - set(KNOWN_KEYS))
    if unknown:
        logger.warning(
            "ignoring unknown nextlaw metadata %s; known keys: %s", ", ".join(unknown), ", ".join(KNOWN_KEYS)
        )
    spec = replace(spec, **{o.field: o.parse(o.key, meta[o.key]) for o in OPTIONS if o.key in meta})
    if spec.folds == 1 or spec.folds < 0:
        raise OptionError(f"task {task}: folds={spec.folds}; use 0 (in-sample) or K >= 2 folds")
    if spec.folds and not MEASURES[spec.measure].heldout:
        raise OptionError(
            f"task {task}: held-out folds are defined for the {', '.join(HELDOUT_MEASURES)} measures only, "
            f"not {spec.measure}; leave nextlaw_folds out for this task"
        )
    return spec
