"""Metric values of a results file's tasks: numbers, standard errors and benchmark scores.

lm-eval keys each metric ``"<metric>,<filter>"`` and its standard error ``"<metric>_stderr,<filter>"``;
a standard error may be a number or ``"N/A"`` (or null, or NaN) where there is none, read as NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from nextlaw_task.schema import parse_layer_metric

STDERR = "_stderr"
_TASK_FIELDS = frozenset({"name", "alias", "sample_len", "sample_count"})


def is_nextlaw(metrics: Mapping[str, Any]) -> bool:
    """A nextlaw task: one that reports ``law_slope`` or a per-layer metric, whatever its name."""
    names = {key.split(",", 1)[0] for key in metrics}
    return "law_slope" in names or any(parse_layer_metric(name) for name in names)


def benchmark_scores(
    data: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Numeric scores of the non-nextlaw tasks, keyed ``task/metric`` (``/filter`` unless none), and their SEs.

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
    errors: dict[str, float] = {}
    for task, metrics in results.items():
        if task in folded or is_nextlaw(metrics):
            continue
        for (name, filt), value in _numeric_metrics(metrics).items():
            column = f"{task}/{name}" if filt == "none" else f"{task}/{name}/{filt}"
            scores[column] = value
            error = as_stderr(metrics.get(f"{name}{STDERR},{filt}"))
            if not math.isnan(error):
                errors[column] = error
    return scores, errors


def standard_errors(
    metrics: Mapping[str, Any], names: Iterable[str]
) -> tuple[dict[str, float], dict[str, dict[int, float]]]:
    """The SEs a nextlaw task reports: of the metrics in ``names``, and per quantity of each state.

    ``pr_layer_01_stderr`` is state 1's SE, never a per-layer metric of its own. SEs that are not
    numbers (``"N/A"``, null, NaN) are left out.
    """
    wanted = set(names)
    errors: dict[str, float] = {}
    layers: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        name, _, filt = key.partition(",")
        error = as_stderr(value)
        if filt != "none" or not name.endswith(STDERR) or math.isnan(error):
            continue
        base = name.removesuffix(STDERR)
        parsed = parse_layer_metric(base)
        if parsed:
            layers.setdefault(parsed[0], {})[parsed[1]] = error
        elif base in wanted:
            errors[base] = error
    return errors, layers


def _numeric_metrics(metrics: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    found: dict[tuple[str, str], float] = {}
    for key, value in metrics.items():
        name, _, filt = key.partition(",")
        if key in _TASK_FIELDS or not filt or name.endswith(STDERR):
            continue
        number = as_float(value)
        if number is not None:
            found[(name, filt)] = number
    return found


def as_float(value: Any) -> float | None:
    """A metric value as float; None (JSON null) reads as NaN; anything else non-numeric: None."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def as_stderr(value: Any) -> float:
    """A standard error as float; NaN where there is none (``"N/A"``, null, absent, not a number)."""
    number = as_float(value)
    return math.nan if number is None else number
