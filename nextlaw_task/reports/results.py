"""Read lm-evaluation-harness results files and extract the nextlaw measurements.

An lm-eval results file (``OUT/<model>/results_<timestamp>.json``) holds, under ``results``, one
dict per task whose metric keys look like ``"<metric>,<filter>"``. A task counts as a *nextlaw
task* when it reports ``law_slope`` or a per-layer metric (``pr_layer_NN``, ``fuzziness_layer_NN``,
parsed by ``nextlaw_task.schema``), whatever its name, so every variant of the task (and any
future one) is picked up. Every other task with numeric metrics
is a *benchmark* whose scores are shown next to the law.

Rows never mix runs. A row is keyed by (model, revision, task, measurement): the corpus (its
sha256 where the file records one, else its location), the documents and tokens measured
(``n_docs``, ``n_tokens``) and the resolved ``nextlaw_*`` options (see
:mod:`nextlaw_task.reports.measurement`). Runs that differ in any of these are separate rows; only
when several files describe the same key does the newest one win. A file's time is the ``date``
lm-eval stores in it (the run's start), or failing that the timestamp in its name
(``results_2026-11-26T10-49-50.701350.json``), or failing that its modification time.

Every value may come with a standard error, ``"<metric>_stderr,<filter>"`` beside it: a number,
or ``"N/A"``/null/NaN where there is none (read as NaN; files written before SEs existed have no
such keys). A row's benchmark scores (and their SEs) come from its own results file, i.e. the same
run, and from results files named explicitly (``load_rows(..., benchmarks=[...])``, the
``--benchmarks`` option of ``nextlaw leaderboard``) for the same (model, revision); a score the run
itself has is kept, and two named files giving the same model the same score is an error.
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

from nextlaw_task.reports.measurement import Measurement, read_measurement, short_name
from nextlaw_task.reports.scores import STDERR, as_float, benchmark_scores, is_nextlaw, standard_errors
from nextlaw_task.schema import FOLD_SPREAD, ILL_POSED, LAW_METRICS, LAW_STATES, MEASURES, parse_layer_metric

#: The bookkeeping metrics a row keeps.
ROW_COUNTS: tuple[str, ...] = ("n_tokens", "n_docs", "hidden_size")
#: Tasks whose per-layer values results files before 0.2 wrote as ``pr_layer_*`` although they are
#: not prediction residuals; read back under their own quantity.
_LEGACY_QUANTITY = {"nextlaw_separation_fuzziness": MEASURES["separation_fuzziness"].quantity}
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
    #: standard errors of the benchmark scores, where the file has them
    benchmark_stderr: Mapping[str, float] = field(default_factory=dict)
    #: standard errors of the law metrics (LAW_METRICS names), where the file has them
    stderr: Mapping[str, float] = field(default_factory=dict)
    #: standard error of each state's value, where the file has one
    layer_stderr: Mapping[int, float] = field(default_factory=dict)
    #: the corpus and options the row was measured with
    measurement: Measurement = field(default_factory=Measurement)
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
    def short_label(self) -> str:
        """:attr:`model_label` with a local path cut to its folder name (a Hub id stays whole)."""
        name = short_name(self.model)
        return f"{name}@{self.revision}" if self.revision else name

    @property
    def key(self) -> tuple[str, ...]:
        """What makes two rows the same measurement: model, revision, task, corpus, counts, options."""
        corpus, options = self.measurement.identity
        counts = (repr(self.n_docs), repr(self.n_tokens))
        return (self.model, self.revision or "", self.task, corpus, *counts, options)

    def se(self, metric: str) -> float:
        """The standard error of a law metric; NaN where the file has none."""
        return self.stderr.get(metric, math.nan)

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

    @property
    def pr_first_stderr(self) -> float:
        """The standard error of :attr:`pr_first` (NaN where there is none)."""
        return self.layer_stderr.get(1, math.nan)

    @property
    def pr_last_stderr(self) -> float:
        """The standard error of :attr:`pr_last` (NaN where there is none)."""
        return self.layer_stderr.get(self.last_state, math.nan)


@dataclass(frozen=True)
class ResultsFile:
    """One parsed lm-eval results file."""

    path: Path
    model: str
    revision: str | None
    date: float
    rows: tuple[NextlawRow, ...]
    benchmarks: Mapping[str, float]
    benchmark_stderr: Mapping[str, float]


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
    return parse_results(data, path)


def rows_of(results: Mapping[str, Any], name: str = "in-memory results") -> list[NextlawRow]:
    """The nextlaw rows of the dict ``lm_eval.simple_evaluate`` returned (in a notebook: no file needed),
    for ``markdown_report``, ``law_figure`` and the leaderboard's ``render``; ``name`` stands for a source."""
    return list(parse_results(json.loads(json.dumps(results, default=str)), Path(name)).rows)


def parse_results(data: Any, path: Path) -> ResultsFile:
    """One lm-eval results document (parsed JSON) read from ``path``; raises ResultsError if it is not one."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
        raise ResultsError(path, "not an lm-eval results JSON (no 'results' mapping of tasks)")
    model, revision = _model_identity(data)
    date = _file_date(path, data)
    scores, errors = benchmark_scores(data, results)
    configs = data.get("configs") if isinstance(data.get("configs"), dict) else {}
    rows = tuple(
        replace(
            _nextlaw_row(path, task, metrics, model, revision, date),
            benchmarks=scores,
            benchmark_stderr=errors,
            measurement=_measurement(path, task, configs.get(task)),
        )
        for task, metrics in sorted(results.items())
        if is_nextlaw(metrics)
    )
    return ResultsFile(path, model, revision, date, rows, scores, errors)


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


def load_rows(paths: Iterable[Path | str], benchmarks: Iterable[Path | str] = ()) -> list[NextlawRow]:
    """Every nextlaw row in the given files/folders, newest per :attr:`NextlawRow.key`, sorted.

    Each row carries the benchmark scores of its own results file, and those of the results files
    named in ``benchmarks`` for its (model, revision) (see the module docstring).
    Raises NoNextlawTaskError when none of the files has a nextlaw task.
    """
    paths = list(paths)
    files = sorted(
        (read_results_file(f) for p in paths for f in find_results_files(p)),
        key=lambda r: (r.date, str(r.path)),
    )
    latest: dict[tuple[str, ...], NextlawRow] = {}
    for parsed in files:  # oldest first, so newer files overwrite
        for row in parsed.rows:
            latest[row.key] = row
    if not latest:
        where = paths[0] if len(paths) == 1 else ", ".join(str(p) for p in paths)
        raise NoNextlawTaskError(where, "no nextlaw task in these lm-eval results")
    rows = sorted(latest.values(), key=_row_order)
    return _join_named_benchmarks(rows, [read_benchmark_file(p) for p in benchmarks])


def read_benchmark_file(path: Path | str) -> ResultsFile:
    """A results file named for its benchmark scores; ResultsError for a folder or a file without any."""
    path = Path(path)
    if path.is_dir():
        raise ResultsError(path, "a folder; name the results file whose benchmark scores to join")
    parsed = read_results_file(path)
    if not parsed.benchmarks:
        raise ResultsError(path, "no benchmark scores (only nextlaw tasks or none) in this results file")
    return parsed


def _row_order(row: NextlawRow) -> tuple[Any, ...]:
    counts = tuple(v if math.isfinite(v) else math.inf for v in (row.n_docs, row.n_tokens))
    return (row.model, row.revision or "", row.task, row.measurement.corpus_label, *counts, row.key)


def _join_named_benchmarks(rows: list[NextlawRow], named: list[ResultsFile]) -> list[NextlawRow]:
    """Rows with the scores of the named files of their (model, revision) added; the run's own win."""
    found: dict[tuple[str, str | None], dict[str, tuple[float, float, Path]]] = {}
    for parsed in named:
        mine = found.setdefault((parsed.model, parsed.revision), {})
        for name, value in parsed.benchmarks.items():
            if name in mine and mine[name][2] != parsed.path:
                raise ResultsError(parsed.path, f"{name} of {parsed.model} is also in {mine[name][2]}; name one")
            mine[name] = (value, parsed.benchmark_stderr.get(name, math.nan), parsed.path)
    for parsed in named:
        if not any((row.model, row.revision) == (parsed.model, parsed.revision) for row in rows):
            raise ResultsError(parsed.path, f"model {parsed.model} (revision {parsed.revision}) is on no nextlaw row")
    joined = []
    for row in rows:
        extra = {k: v for k, v in found.get((row.model, row.revision), {}).items() if k not in row.benchmarks}
        scores = {name: v for name, (v, _, _) in extra.items()} | dict(row.benchmarks)
        errors = {name: se for name, (_, se, _) in extra.items()} | dict(row.benchmark_stderr)
        joined.append(replace(row, benchmarks=dict(sorted(scores.items())), benchmark_stderr=errors))
    return joined


def _measurement(path: Path, task: str, config: Any) -> Measurement:
    try:
        return read_measurement(config)
    except ValueError as err:
        raise ResultsError(path, f"task {task!r}: {err}") from None


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
        if filt != "none" or name.endswith(STDERR):
            continue
        number = as_float(value)
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
    errors, layer_errors = standard_errors(metrics, LAW_METRICS)
    state_errors = {s: e for s, e in layer_errors.get(quantity, {}).items() if s in by_state}
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
        stderr=errors,
        layer_stderr=dict(sorted(state_errors.items())),
        **law,
    )


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
    return path.stat().st_mtime if path.exists() else 0.0


def format_number(value: float, digits: int = 6) -> str:
    """A metric for a human table: integers plainly, others to ``digits`` significant digits."""
    if math.isnan(value):
        return "nan"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}g}"

