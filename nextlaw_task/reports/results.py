"""Read lm-evaluation-harness results files and extract the nextlaw measurements.

An lm-eval results file (``OUT/<model>/results_<timestamp>.json``) holds, under ``results``, one
dict per task whose metric keys look like ``"<metric>,<filter>"``. A task counts as a *nextlaw
task* when it reports ``law_slope`` or a per-layer metric (``pr_layer_NN``, ``fuzziness_layer_NN``,
parsed by ``nextlaw_task.schema``), whatever its name, so every variant of the task (and any
future one) is picked up. Every other task with numeric metrics
is a *benchmark* whose scores are shown next to the law.

When several files describe the same (model, revision, task), the newest one wins. A file's time
is the ``date`` lm-eval stores in it (the run's start), or failing that the timestamp in its name
(``results_2026-11-26T10-49-50.701350.json``), or failing that its modification time. Benchmark
scores are merged per (model, revision) across all the files read, the newest file winning for
each score, so ``lm_eval --tasks nextlaw`` and a separate ``lm_eval --tasks hellaswag`` run of the
same model end up on one leaderboard row.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from nextlaw_task.schema import FOLD_SPREAD, ILL_POSED, LAW_METRICS, LAW_STATES, MEASURES, parse_layer_metric

#: The bookkeeping metrics a row keeps.
ROW_COUNTS: tuple[str, ...] = ("n_tokens", "n_docs", "hidden_size")
#: Tasks whose per-layer values results files before 0.2 wrote as ``pr_layer_*`` although they are
#: not prediction residuals; read back under their own quantity.
_LEGACY_QUANTITY = {"nextlaw_separation_fuzziness": MEASURES["separation_fuzziness"].quantity}
_TASK_FIELDS = frozenset({"name", "alias", "sample_len", "sample_count"})
_FILE_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)")


class ResultsError(ValueError):
    """A path that cannot be used as lm-eval results; the message names the path."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {problem}")


class NoNextlawTaskError(ResultsError):
    """A valid lm-eval results file (or set of files) without any nextlaw task."""


@dataclass(frozen=True)
class NextlawRow:
    """The nextlaw measurements of one task of one model, as read from one results file."""

    model: str
    revision: str | None
    task: str
    layers: Mapping[int, float]
    law_slope: float
    law_intercept: float
    law_rho: float
    law_pearson_r: float
    law_r2: float
    pr_ratio_last_first: float
    equilearning_deviation: float
    n_tokens: float
    n_docs: float
    hidden_size: float
    source: Path
    date: float
    benchmarks: Mapping[str, float] = field(default_factory=dict)
    #: what the per-layer values are: ``pr`` (prediction residual) or ``fuzziness``
    quantity: str = "pr"
    #: states whose fit is not a result (their value is NaN); the law left them out
    ill_posed: tuple[int, ...] = ()
    #: the states the law was fitted over (NaN in results files written before 0.2)
    law_first_state: float = math.nan
    law_last_state: float = math.nan
    law_n_states: float = math.nan

    @property
    def law_states_label(self) -> str:
        """``1..30 (30)``: the states the law was fitted over, or ``?`` when the file does not say."""
        if math.isnan(self.law_first_state):
            return "?" if math.isnan(self.law_n_states) else "none"
        return f"{int(self.law_first_state)}..{int(self.law_last_state)} ({int(self.law_n_states)})"

    @property
    def model_label(self) -> str:
        """The model name, with ``@revision`` when a revision was requested."""
        return f"{self.model}@{self.revision}" if self.revision else self.model

    @property
    def states(self) -> tuple[int, ...]:
        """The hidden-state indices measured, ascending."""
        return tuple(sorted(self.layers))

    @property
    def last_state(self) -> int:
        """The deepest state measured (L when every state was measured)."""
        return max(self.layers) if self.layers else 0

    @property
    def fit_states(self) -> tuple[int, ...]:
        """The states the law is fitted over: 1..L (not the embeddings), where PR has a log."""
        return tuple(s for s in self.states if s >= 1 and math.isfinite(self.layers[s]) and self.layers[s] > 0)

    @property
    def pr_first(self) -> float:
        """The value at state 1, the first transformer layer's output (NaN if not measured)."""
        return self.layers.get(1, math.nan)

    @property
    def pr_last(self) -> float:
        """The value at the deepest state measured."""
        return self.layers.get(self.last_state, math.nan)


@dataclass(frozen=True)
class ResultsFile:
    """One parsed lm-eval results file."""

    path: Path
    model: str
    revision: str | None
    date: float
    rows: tuple[NextlawRow, ...]
    benchmarks: Mapping[str, float]


def read_results_file(path: Path | str) -> ResultsFile:
    """Parse one lm-eval results JSON; raises ResultsError if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(path, f"cannot read file ({err})") from None
    except json.JSONDecodeError as err:
        raise ResultsError(path, f"not an lm-eval results JSON (invalid JSON: {err})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
        raise ResultsError(path, "not an lm-eval results JSON (no 'results' mapping of tasks)")
    model, revision = _model_identity(data)
    date = _file_date(path, data)
    rows = tuple(
        _nextlaw_row(path, task, metrics, model, revision, date)
        for task, metrics in sorted(results.items())
        if _is_nextlaw(metrics)
    )
    return ResultsFile(path, model, revision, date, rows, _benchmarks(data, results))


def find_results_files(path: Path | str) -> list[Path]:
    """The results file itself, or every ``results_*.json`` below a folder (sorted)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob("results_*.json") if p.is_file())
        if not found:
            raise ResultsError(path, "no lm-eval results_*.json file in this folder")
        return found
    if not path.exists():
        raise ResultsError(path, "no such file or folder")
    return [path]


def load_rows(paths: Iterable[Path | str]) -> list[NextlawRow]:
    """Every nextlaw row in the given files/folders, newest per (model, revision, task).

    Each row carries the benchmark scores of its (model, revision) found in any of the files.
    Raises NoNextlawTaskError when none of the files has a nextlaw task.
    """
    paths = list(paths)
    files = sorted(
        (read_results_file(f) for p in paths for f in find_results_files(p)),
        key=lambda r: (r.date, str(r.path)),
    )
    latest: dict[tuple[str, str | None, str], NextlawRow] = {}
    scores: dict[tuple[str, str | None], dict[str, float]] = {}
    for parsed in files:  # oldest first, so newer files overwrite
        scores.setdefault((parsed.model, parsed.revision), {}).update(parsed.benchmarks)
        for row in parsed.rows:
            latest[(row.model, row.revision, row.task)] = row
    if not latest:
        where = paths[0] if len(paths) == 1 else ", ".join(str(p) for p in paths)
        raise NoNextlawTaskError(where, "no nextlaw task in these lm-eval results")
    return [
        replace(row, benchmarks=dict(sorted(scores[(row.model, row.revision)].items())))
        for _, row in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2]))
    ]


def _is_nextlaw(metrics: Mapping[str, Any]) -> bool:
    names = {key.split(",", 1)[0] for key in metrics}
    return "law_slope" in names or any(parse_layer_metric(name) for name in names)


def _nextlaw_row(
    path: Path,
    task: str,
    metrics: Mapping[str, Any],
    model: str,
    revision: str | None,
    date: float,
) -> NextlawRow:
    values: dict[str, float] = {}
    layers: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        name, _, filt = key.partition(",")
        if filt != "none" or name.endswith("_stderr"):
            continue
        number = _as_float(value)
        parsed = parse_layer_metric(name)
        if number is None:
            if parsed or name in LAW_METRICS + ROW_COUNTS:
                raise ResultsError(path, f"task {task!r}: {key!r} is not a number: {value!r}")
        elif parsed:
            layers.setdefault(parsed[0], {})[parsed[1]] = number
        else:
            values[name] = number
    layers.pop(FOLD_SPREAD, None)
    ill_posed = tuple(sorted(layers.pop(ILL_POSED, {})))
    if len(layers) > 1:
        raise ResultsError(path, f"task {task!r}: per-layer values of several kinds ({', '.join(sorted(layers))})")
    quantity, by_state = next(iter(layers.items()), ("pr", {}))
    quantity = _LEGACY_QUANTITY.get(task, quantity) if quantity == "pr" else quantity
    law = {name: values.get(name, math.nan) for name in LAW_METRICS + ROW_COUNTS + LAW_STATES}
    return NextlawRow(
        model=model,
        revision=revision,
        task=task,
        layers=dict(sorted(by_state.items())),
        source=path,
        date=date,
        quantity=quantity,
        ill_posed=ill_posed,
        **law,
    )


def _benchmarks(data: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Numeric scores of the non-nextlaw tasks, keyed ``task/metric`` (``/filter`` unless none).

    A subtask of a group that reports its own aggregate is left out: the group's score stands
    for it, which keeps e.g. MMLU to one column instead of 57.
    """
    scored = {task for task, metrics in results.items() if _numeric_metrics(metrics)}
    groups = data.get("group_subtasks")
    folded = {
        sub
        for group, subs in (groups.items() if isinstance(groups, dict) else ())
        if group in scored and isinstance(subs, list)
        for sub in subs
    }
    scores: dict[str, float] = {}
    for task, metrics in results.items():
        if task in folded or _is_nextlaw(metrics):
            continue
        for (name, filt), value in _numeric_metrics(metrics).items():
            scores[f"{task}/{name}" if filt == "none" else f"{task}/{name}/{filt}"] = value
    return scores


def _numeric_metrics(metrics: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for key, value in metrics.items():
        name, _, filt = key.partition(",")
        if key in _TASK_FIELDS or not filt or name.endswith("_stderr"):
            continue
        number = _as_float(value)
        if number is not None:
            found[(name, filt)] = number
    return found


def _as_float(value: Any) -> float | None:
    """A metric value as float; None (JSON null) reads as NaN; anything else non-numeric: None."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _model_args(config: Any) -> dict[str, str]:
    """``config.model_args`` as a dict, whether lm-eval stored a dict or a ``k=v,k=v`` string."""
    args = config.get("model_args") if isinstance(config, dict) else None
    if isinstance(args, dict):
        return {str(k): str(v) for k, v in args.items()}
    if isinstance(args, str):
        pairs = (item.partition("=") for item in args.split(",") if "=" in item)
        return {k.strip(): v.strip() for k, _, v in pairs}
    return {}


def _model_identity(data: Mapping[str, Any]) -> tuple[str, str | None]:
    """(model name, requested revision) of a results file."""
    config = data.get("config")
    args = _model_args(config)
    name = data.get("model_name")
    if not isinstance(name, str) or not name:
        name = args.get("pretrained") or (config or {}).get("model") or "unknown"
    return str(name), args.get("revision") or None


def _file_date(path: Path, data: Mapping[str, Any]) -> float:
    """When the run happened, as a POSIX time, for newest-wins ordering."""
    date = data.get("date")
    if isinstance(date, (int, float)) and not isinstance(date, bool) and math.isfinite(date):
        return float(date)
    match = _FILE_STAMP.search(path.name)
    if match:
        return datetime.strptime(match.group(1).split(".")[0], "%Y-%m-%dT%H-%M-%S").timestamp()
    return path.stat().st_mtime


def format_number(value: float, digits: int = 6) -> str:
    """A metric for a human table: integers plainly, others to ``digits`` significant digits."""
    if math.isnan(value):
        return "nan"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}g}"

