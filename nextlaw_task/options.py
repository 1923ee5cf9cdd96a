"""The measurement a nextlaw task asks for, from its YAML and the user's ``--metadata``.

A task's YAML fixes what it measures (``dataset_kwargs``: ``measure``, ``target``, ``folds``);
the user tunes how, for every nextlaw task of a run, with ``nextlaw_*`` keys in ``--metadata``
(or ``--model_args``, which the harness merges into the same metadata):

======================  ==========================================================  ============
key                     meaning                                                     default
======================  ==========================================================  ============
nextlaw_data            corpus: a .jsonl (field ``text``), a .txt (blank-line       embedded
                        paragraphs) or a folder of .txt files                       Austen corpus
nextlaw_max_tokens      truncate each document to this many tokens                  512
nextlaw_layers          states measured: ``all``, ``0,4,8`` or ``every:4``           all
nextlaw_normalize       ``initialized_ln``, ``none`` or ``standardize``             initialized_ln
nextlaw_folds           K-fold held-out PR (0 = in-sample, the authors' number)     task's YAML
nextlaw_law_first       first state of the law's fit                                1
nextlaw_law_last        last state of the law's fit (``-1`` = L)                    -1
nextlaw_seed            seed of the shuffled_id permutation, 0 .. 2**64 - 1        666
nextlaw_memory_budget   memory the statistics may take (``8GiB``, ``500MB``,        GPU: half the
                        bytes); beyond it, groups of states are measured in         free memory;
                        separate passes over the corpus (see ``plan_memory``)       CPU: no limit
======================  ==========================================================  ============
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nextlaw_task.normalize import NORMALIZATIONS

logger = logging.getLogger(__name__)

MEASURES = ("id", "shuffled_id", "onehot", "separation_fuzziness")
# target -> (offset of the target token from the sample position, first position, positions
# dropped at the end): next token of position t is token t+1, over t = 0..T-2.
TARGETS: dict[str, tuple[int, int, int]] = {
    "next": (1, 0, 1),
    "current": (0, 0, 1),
    "previous": (-1, 1, 0),
    "next_next": (2, 0, 2),
}
KNOWN_KEYS = (
    "nextlaw_data",
    "nextlaw_max_tokens",
    "nextlaw_layers",
    "nextlaw_normalize",
    "nextlaw_folds",
    "nextlaw_law_first",
    "nextlaw_law_last",
    "nextlaw_seed",
    "nextlaw_memory_budget",
)


class OptionError(ValueError):
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
    memory_budget: int | None = None

    def states(self, n_layers: int) -> tuple[int, ...]:
        """The state indices measured for a model with ``n_layers`` blocks (states 0..L)."""
        return parse_layers(self.layers, n_layers)

    @property
    def positions(self) -> tuple[int, int, int]:
        """(target offset, first sample position, positions dropped at the end)."""
        return TARGETS[self.target]


def parse_layers(text: str, n_layers: int) -> tuple[int, ...]:
    """``all`` | ``every:K`` | comma-separated indices (negative counts from L) -> sorted states."""
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
        index = _as_int("nextlaw_layers", part)
        index = last + 1 + index if index < 0 else index
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
    """A non-empty path (``~`` expanded); an empty one would silently read the current folder."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise OptionError(
            f"{key}={value!r}: expected the path of a corpus (a .jsonl file, a .txt file or a folder of "
            ".txt files); leave the key out for the embedded corpus"
        )
    try:
        return str(Path(value).expanduser())
    except (RuntimeError, ValueError) as error:  # an unknown ~user, a NUL character
        raise OptionError(f"{key}={value!r}: not a usable path ({error}); pass an absolute path") from None


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
        raise OptionError(f"task {task}: unknown dataset_kwargs {sorted(task_kwargs)}; known: measure, target, folds")
    if spec.measure not in MEASURES:
        raise OptionError(f"task {task}: measure {spec.measure!r} is not one of {', '.join(MEASURES)}")
    if spec.target not in TARGETS:
        raise OptionError(f"task {task}: target {spec.target!r} is not one of {', '.join(TARGETS)}")

    meta = {k: v for k, v in (metadata or {}).items() if str(k).startswith("nextlaw_")}
    unknown = sorted(set(meta) - set(KNOWN_KEYS))
    if unknown:
        logger.warning(
            "ignoring unknown nextlaw metadata %s; known keys: %s", ", ".join(unknown), ", ".join(KNOWN_KEYS)
        )
    updates: dict[str, Any] = {}
    if "nextlaw_data" in meta:
        updates["data"] = _as_path("nextlaw_data", meta["nextlaw_data"])
    if "nextlaw_max_tokens" in meta:
        updates["max_tokens"] = _as_int("nextlaw_max_tokens", meta["nextlaw_max_tokens"])
        if updates["max_tokens"] < 3:
            raise OptionError(f"nextlaw_max_tokens={updates['max_tokens']}: must be at least 3 tokens")
    if "nextlaw_layers" in meta:
        updates["layers"] = str(meta["nextlaw_layers"])
        parse_layers(updates["layers"], 10**6)  # syntax check now; range check once L is known
    if "nextlaw_normalize" in meta:
        updates["normalize"] = str(meta["nextlaw_normalize"]).strip().lower()
        if updates["normalize"] not in NORMALIZATIONS:
            raise OptionError(
                f"nextlaw_normalize={meta['nextlaw_normalize']!r}: choose one of {', '.join(NORMALIZATIONS)}"
            )
    if "nextlaw_folds" in meta:
        updates["folds"] = _as_int("nextlaw_folds", meta["nextlaw_folds"])
    for key in ("law_first", "law_last", "seed"):
        if f"nextlaw_{key}" in meta:
            updates[key] = _as_int(f"nextlaw_{key}", meta[f"nextlaw_{key}"])
    if "nextlaw_memory_budget" in meta:
        updates["memory_budget"] = parse_bytes("nextlaw_memory_budget", meta["nextlaw_memory_budget"])
    if not 0 <= updates.get("seed", 0) < 2**64:
        raise OptionError(f"nextlaw_seed={updates['seed']}: the seed must be an integer from 0 to 2**64 - 1")
    spec = replace(spec, **updates)
    if spec.folds == 1 or spec.folds < 0:
        raise OptionError(f"task {task}: folds={spec.folds}; use 0 (in-sample) or K >= 2 folds")
    if spec.folds and spec.measure not in ("id", "onehot"):
        raise OptionError(f"task {task}: held-out folds are defined for the id and onehot measures only")
    return spec
