"""One task's metrics from its measure's results: the per-layer values, the law's fit, the counts.

Metric names come from ``nextlaw_task.schema``; every value is a Python float (lm-eval prints
them in its table, and a numpy scalar or tensor would break it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from nextlaw_task.engine.jackknife import jackknife_stderr
from nextlaw_task.engine.law import fit_law
from nextlaw_task.errors import NextlawError
from nextlaw_task.engine.measures import MeasureResult
from nextlaw_task.schema import FOLD_SPREAD, ILL_POSED, LAW_METRICS, MEASURES, layer_metric, resolve_state

logger = logging.getLogger(__name__)


class HeldoutError(NextlawError, ValueError):
    """Held-out PR was asked for, but no state's training folds determine a fit (too few or too alike samples)."""


def task_metrics(
    task: str,
    measure: str,
    result: MeasureResult,
    states: Sequence[int],
    n_layers: int,
    law_bounds: tuple[int, int],
    counts: Mapping[str, int],
) -> dict[str, float]:
    """The metrics of ``task``: its measure per state (NaN, flagged, where the fit is not a result), the
    fold spread, the law over ``law_bounds`` (negative bounds count back from L) with the states it was
    fitted over, and the counts (``docs``, ``truncated``)."""
    if result.fold_std is not None and result.n_tokens and states and all(s in result.ill_posed for s in states):
        raise HeldoutError(
            f"{task}: held-out PR is not a result for any of the {len(states)} states "
            f"({next(iter(result.ill_posed.values()))}). Every training fold needs more samples than "
            "hidden size + 1, varied enough to determine the fit: measure more tokens (a larger --limit "
            "or nextlaw_data corpus), or use nextlaw_equilearning for in-sample PR"
        )
    quantity = MEASURES[measure].quantity
    # A state whose fit is not a result (N <= d + 1, a constant target, ...) is NaN, never a number to rank.
    metrics = {
        layer_metric(quantity, s, n_layers): math.nan if s in result.ill_posed else float(result.values.get(s, math.nan))
        for s in states
    }
    metrics.update({layer_metric(ILL_POSED, s, n_layers): 1.0 for s in states if s in result.ill_posed})
    if result.fold_std is not None:
        metrics.update({layer_metric(FOLD_SPREAD, s, n_layers): float(result.fold_std.get(s, math.nan)) for s in states})
    if result.ill_posed:
        logger.warning(
            "%s: %d of %d states are ill-posed and left out of the law (%s)",
            task, len(result.ill_posed), len(states), next(iter(result.ill_posed.values())),
        )
    usable = {s: v for s, v in result.values.items() if s not in result.ill_posed}
    first, last = (resolve_state(bound, n_layers) for bound in law_bounds)
    fit = fit_law(usable, first=first, last=last)
    if not fit.ok:
        logger.warning("%s: the law was not fitted: %s", task, fit.reason)
    metrics.update(fit.as_metrics())
    used = fit.states_used if fit.ok else ()
    metrics.update(law_first_state=float(min(used)) if used else math.nan,
                   law_last_state=float(max(used)) if used else math.nan, law_n_states=float(len(used)))
    metrics.update(
        n_tokens=float(result.n_tokens),
        n_docs=float(counts["docs"]),
        n_docs_truncated=float(counts["truncated"]),
        ill_posed_states=float(len(result.ill_posed)),
        hidden_size=float(result.hidden_size),
    )
    return metrics


def task_stderrs(
    measure: str, result: MeasureResult, states: Sequence[int], n_layers: int, law_bounds: tuple[int, int]
) -> dict[str, float]:
    """Jackknife standard errors of the per-state values and of the law (refitted on each replicate's
    series over the states the point estimate used); empty without replicates, NaN where a state or a
    replicate is not a result."""
    if not result.replicates:
        return {}
    quantity = MEASURES[measure].quantity
    errors = {
        layer_metric(quantity, s, n_layers): math.nan if s in result.ill_posed
        else jackknife_stderr(list(result.replicates.get(s, {}).values()))
        for s in states
    }
    first, last = (resolve_state(bound, n_layers) for bound in law_bounds)
    usable = {s: v for s, v in result.values.items() if s not in result.ill_posed}
    used = fit_law(usable, first=first, last=last, log=False).states_used
    groups = sorted({g for s in used for g in result.replicates.get(s, {})})
    series = [{s: result.replicates.get(s, {}).get(g, math.nan) for s in used} for g in groups]
    fits = [fit_law(one, first=first, last=last, log=False).as_metrics() for one in series
            if all(math.isfinite(v) for v in one.values())]
    for key in LAW_METRICS:
        errors[key] = jackknife_stderr([f[key] for f in fits]) if len(fits) == len(series) else math.nan
    return errors
