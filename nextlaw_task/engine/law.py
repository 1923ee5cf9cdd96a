"""The equi-learning law: log10 PR is linear in the layer index.

``fit_law`` fits log10(PR_l) = intercept + slope * l by least squares over the states
``first..last`` (by label, so a subset such as 0, 4, 8, ... is fitted against 4, 8, ...).
rho = 10^slope is the per-layer decay ratio (PR_l ~ PR_first * rho^(l - first)).

equilearning_deviation = RMS residual of that fit / |fitted total drop|, where the fitted total
drop is slope * (last state used - first state used). It is 0 exactly when log PR is linear in the
layer index, i.e. when every layer cuts log PR by the same amount, and it reads as the typical
departure from equal learning as a fraction of the whole decrease. It is unchanged by rescaling
PR, by the base of the logarithm and by relabelling layers with a common step. We prefer it to the
spread of the per-layer decrements because one noisy layer moves one residual instead of two
decrements and unevenly spaced state subsets need no special weighting. A perfectly flat PR
(no drop, no residual) counts as equal learning (0); a drop of 0 with residuals gives +inf.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Mapping

from nextlaw_task.schema import LAW_METRICS

logger = logging.getLogger(__name__)

METRIC_KEYS = LAW_METRICS
NAN = math.nan


@dataclass(frozen=True)
class LawFit:
    """Result of :func:`fit_law`; when ``ok`` is False every number is NaN and ``reason`` says why."""

    slope: float
    intercept: float
    rho: float
    pearson_r: float
    r2: float
    ratio_last_first: float
    decrements: tuple[float, ...]
    equilearning_deviation: float
    states_used: tuple[int, ...]
    ok: bool
    reason: str | None
    dropped: dict[int, str] = field(default_factory=dict)

    def as_metrics(self) -> dict[str, float]:
        """The law as lm-eval metrics: Python floats, NaN where the fit is not ok."""
        values = (
            self.slope,
            self.intercept,
            self.rho,
            self.pearson_r,
            self.r2,
            self.ratio_last_first,
            self.equilearning_deviation,
        )
        return {key: float(value) if self.ok else NAN for key, value in zip(METRIC_KEYS, values)}


def _usable(values: Mapping[int, float], first: int, last: int) -> tuple[dict[int, float], dict[int, str]]:
    kept, dropped = {}, {}
    for state in sorted(int(s) for s in values):
        if not first <= state <= last:
            continue
        pr = float(values[state])
        if not math.isfinite(pr) or pr <= 0.0:
            dropped[state] = f"state {state}: PR {pr!r} is not finite and positive, so it has no log; dropped"
        else:
            kept[state] = pr
    return kept, dropped


def _not_ok(reason: str, used: tuple[int, ...], dropped: dict[int, str], log: bool) -> LawFit:
    if log:
        logger.warning("law not fitted: %s", reason)
    return LawFit(NAN, NAN, NAN, NAN, NAN, NAN, (), NAN, used, False, reason, dropped)


def fit_law(values: Mapping[int, float], first: int = 1, last: int | None = None, log: bool = True) -> LawFit:
    """Fit log10 PR against the state label over states ``first..last`` inclusive (last None = max state).

    Non-finite or non-positive PRs are dropped (listed in ``dropped``); with fewer than 3 usable
    states the result has ok=False and reason "not enough layers: ...", never an exception.
    ``log=False`` keeps both out of the log (the jackknife refits the law once per group).
    """
    top = max((int(s) for s in values), default=first) if last is None else int(last)
    kept, dropped = _usable(values, int(first), top)
    for reason in dropped.values() if log else ():
        logger.warning("law: %s", reason)
    used = tuple(kept)
    if len(used) < 3:
        detail = "; ".join(dropped.values()) or "no other states given"
        return _not_ok(
            f"not enough layers: {len(used)} usable states in {first}..{top} (need 3): {detail}", used, dropped, log
        )
    xs = [float(s) for s in used]
    ys = [math.log10(kept[s]) for s in used]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    syy = sum((y - mean_y) ** 2 for y in ys)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    rss = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    decrements = tuple((ys[i] - ys[i + 1]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1))
    return LawFit(
        slope=slope,
        intercept=intercept,
        rho=10.0**slope,
        pearson_r=sxy / math.sqrt(sxx * syy) if syy > 0 else NAN,
        r2=1.0 - rss / syy if syy > 0 else NAN,
        ratio_last_first=kept[used[-1]] / kept[used[0]],
        decrements=decrements,
        equilearning_deviation=_deviation(rss, len(xs), slope * (xs[-1] - xs[0])),
        states_used=used,
        ok=True,
        reason=None,
        dropped=dropped,
    )


def _deviation(rss: float, count: int, drop: float) -> float:
    rms = math.sqrt(rss / count)
    if rms == 0.0:
        return 0.0
    return rms / abs(drop) if drop != 0.0 else math.inf
