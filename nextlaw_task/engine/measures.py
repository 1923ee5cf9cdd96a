"""Prediction-residual (PR) measures of one hidden state, computed exactly from sufficient statistics.

The measurement as a whole, and where nextlaw follows the authors' code: ``docs/protocol.md``.

All measures read additive statistics about a fixed shift (:class:`Sums`); nothing here sees a
feature vector. Definitions (N samples, features x in R^d, intercept always included):

- ``id`` / ``shuffled_id``: OLS of the scalar target (token id, or its image under a fixed random
  permutation of the vocabulary); PR = RSS / TSS = 1 - R^2.
- ``onehot``: multi-output OLS on the one-hot encoding of the target over the classes seen;
  PR = total RSS / total TSS with TSS = N - sum_c n_c^2 / N.
- ``separation_fuzziness``: Tr(SS_w SS_b^+) with SS_b = sum_c n_c (mu_c - mu)(mu_c - mu)' and
  SS_w = sum_i (x_i - mu_{c_i})(x_i - mu_{c_i})'. Dividing both scatter matrices by N (as some
  write it) gives the same number: (SS_b / N)^+ = N SS_b^+.
- Held-out (``n_folds`` >= 2, id / shuffled_id / onehot): for each fold k, fit on the other folds
  (their statistics are totals minus fold k), score the fold: PR_k = RSS_k / TSS_k where TSS_k is
  taken about fold k's own target mean, so PR_k is 1 - out-of-sample R^2 against the best constant
  for that fold. The value is the mean of PR_k over folds, ``fold_std`` their population standard
  deviation (ddof = 0). Separation fuzziness has no held-out form and stays in-sample.

Ill-posed states are flagged in ``ill_posed`` and explained in ``warnings``; their value is the
computed number where one exists (e.g. ~0 when N <= d + 1) and NaN where none does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Mapping, Sequence

import torch
from torch import Tensor

from nextlaw_task.engine.solve import UNDETERMINED_RTOL, GramSolver, trace_pinv, trace_pinv_factored
from nextlaw_task.engine.sums import Sums
from nextlaw_task.schema import CLASS_MEASURES, HELDOUT_MEASURES, SCALAR_MEASURES

logger = logging.getLogger(__name__)

#: A centered target sum of squares below this fraction of its raw sum (about the shift) is zero.
CONSTANT_TARGET_RTOL = 1e-12
#: Bytes of float64 class columns handled at once in one-hot solves (bounds temporary memory).
CLASS_CHUNK_BYTES = 1 << 28


@dataclass(frozen=True)
class MeasureResult:
    """One measure over all states: PR per state (mean over folds when held out) and its caveats."""

    measure: str
    values: dict[int, float]
    fold_std: dict[int, float] | None
    n_tokens: int
    hidden_size: int
    warnings: tuple[str, ...]
    ill_posed: dict[int, str]
    #: per state, the value with each jackknife group's documents left out (group -> value; NaN where
    #: that fit is not a result); empty without the jackknife
    replicates: dict[int, dict[int, float]] = field(default_factory=dict)

    def union(self, other: MeasureResult) -> MeasureResult:
        """This measure over the states of two passes over the corpus: ``other``'s states added, and where
        ``other`` measured a state again (the fast precision's float64 fallback), its result replaces
        this one's, flag and warning included."""
        kept = {s: reason for s, reason in self.ill_posed.items() if s not in other.values}
        stale = {reason for s, reason in self.ill_posed.items() if s in other.values} - set(kept.values())
        warnings = tuple(w for w in self.warnings if w not in stale)
        return replace(
            self,
            values={**self.values, **other.values},
            replicates={**self.replicates, **other.replicates},
            fold_std=None if self.fold_std is None else {**self.fold_std, **other.fold_std},
            warnings=warnings + tuple(w for w in other.warnings if w not in warnings),
            ill_posed={**kept, **other.ill_posed},
        )


@dataclass(frozen=True)
class _Features:
    """Centered feature moments of one sample set."""

    n: float
    mean: Tensor
    sxx: Tensor
    raw_diag: Tensor

    @classmethod
    def of(cls, sums: Sums) -> _Features:
        d = sums.hidden_size
        x, xx = sums.z[:d], sums.zz[:d, :d]
        # xx - x x' / n: exactly symmetric, as x_i x_j = x_j x_i in floating point
        alpha = -1.0 / sums.n if sums.n else 0.0  # no samples: no centering (the measures say so first)
        return cls(sums.n, x / sums.n, torch.addr(xx, x, x, alpha=alpha), xx.diagonal())

    def solver(self) -> GramSolver:
        return GramSolver(self.sxx, self.raw_diag)


@dataclass(frozen=True)
class _Targets:
    """Moments of m target columns: means (m,), centered sums of squares (m,), centered
    cross-products with the features (d, m), and raw sums of squares about the shift (m,)."""

    mean: Tensor
    ss: Tensor
    cross: Tensor
    raw: Tensor


def _scalar_targets(sums: Sums, column: int) -> _Targets:
    j = sums.hidden_size + column
    d = sums.hidden_size
    total = sums.z[j : j + 1]
    mean = total / sums.n
    ss = sums.zz[j, j : j + 1] - total * mean
    cross = sums.zz[:d, j : j + 1] - torch.outer(sums.z[:d], mean)
    return _Targets(mean, ss, cross, sums.zz[j, j : j + 1])


def _onehot_targets(sums: Sums, classes: Tensor, feature_mean: Tensor) -> _Targets:
    counts = sums.counts[classes]
    mean = counts / sums.n
    cross = (sums.class_x[classes] - counts[:, None] * feature_mean[None, :]).T
    return _Targets(mean, counts - counts * mean, cross, counts)


def _class_chunks(classes: Tensor, hidden_size: int) -> list[Tensor]:
    size = max(1, CLASS_CHUNK_BYTES // (8 * max(hidden_size, 1)))
    return list(torch.split(classes, size))


def _insample_rss(solver: GramSolver, targets: _Targets) -> Tensor:
    return targets.ss.sum() - (targets.cross * solver.solve(targets.cross)).sum()


def _heldout_rss(solver: GramSolver, train: _Features, train_t: _Targets, test: _Features, test_t: _Targets) -> Tensor:
    """Sum over the test set of squared residuals of the training fit, from moments only.

    With B the training coefficients and delta the test-mean error of the training prediction,
    RSS = S_yy - 2 tr(B' S_xy) + tr(B' S_xx B) + n_test |delta|^2 (all test moments centered).
    """
    coef = solver.solve(train_t.cross)
    delta = (test_t.mean - train_t.mean) - (test.mean - train.mean) @ coef
    return (
        test_t.ss.sum()
        - 2.0 * (coef * test_t.cross).sum()
        + (coef * (test.sxx @ coef)).sum()
        + test.n * delta.square().sum()
    )


@dataclass(frozen=True)
class _Outcome:
    value: float
    fold_std: float | None = None
    ill_posed: str | None = None
    warnings: tuple[str, ...] = ()


def _ratio(rss: Tensor, tss: Tensor) -> float:
    return max(float(rss), 0.0) / float(tss)


def _seen_classes(sums: Sums) -> Tensor:
    return torch.nonzero(sums.counts > 0.5).flatten()


def _no_variance(ss: Tensor, raw: Tensor) -> bool:
    return float(ss.sum()) <= CONSTANT_TARGET_RTOL * float(raw.sum())


class _State:
    """One state's statistics, with moments and factorizations computed once and shared by all measures."""

    def __init__(self, state: int, folds: Sequence[Sums], columns: Mapping[str, int]) -> None:
        total = folds[0]
        for fold in folds[1:]:
            total = total + fold
        self.state, self.folds, self.columns, self.total = state, folds, columns, total
        self.n, self.d = int(round(total.n)), total.hidden_size

    @cached_property
    def features(self) -> _Features:
        return _Features.of(self.total)

    @cached_property
    def solver(self) -> GramSolver:
        return self.features.solver()

    @cached_property
    def classes(self) -> Tensor:
        return _seen_classes(self.total)

    def targets(self, measure: str, sums: Sums, feature_mean: Tensor) -> list[_Targets]:
        """The regression targets of ``measure`` in ``sums``: one scalar column, or one-hot class chunks."""
        if measure in SCALAR_MEASURES:
            return [_scalar_targets(sums, self.columns[measure])]
        return [_onehot_targets(sums, chunk, feature_mean) for chunk in _class_chunks(self.classes, self.d)]


def _undefined_reason(measure: str, data: _State) -> str | None:
    """Why no value exists for this state at all (no samples, constant target, one class), or None."""
    state, n = data.state, data.n
    if n == 0:
        return f"state {state}: no samples were fed, so {measure} has no value"
    if measure in CLASS_MEASURES:
        if data.classes.numel() < 2:
            return f"state {state}: a single class (one distinct token id) was seen in {n} samples: {measure} is undefined"
        return None
    targets = _scalar_targets(data.total, data.columns[measure])
    if _no_variance(targets.ss, targets.raw):
        return f"state {state}: the {measure} target has no variance over {n} samples (a single token id): PR is undefined"
    return None


def _interpolation_reason(where: str, n: int, d: int, training: bool) -> str | None:
    """Flag a fit with no more samples than parameters (d slopes + intercept)."""
    if n > d + 1:
        return None
    if training:
        return (
            f"{where}: {n} training samples <= hidden size {d} + 1: the fit interpolates the training "
            f"folds (minimum-norm solution), so this held-out PR is not an OLS result; feed more tokens"
        )
    return (
        f"{where}: {n} samples <= hidden size {d} + 1: in-sample PR is 0 by construction, not a result; "
        f"feed more tokens or use held-out folds"
    )


def _undetermined_reason(where: str, solver: GramSolver, train: _Features, test: _Features) -> str | None:
    """Flag a training fit with no unique solution in directions the held-out samples use."""
    offset = test.mean - train.mean
    share = solver.undetermined(test.sxx + test.n * torch.outer(offset, offset), test.raw_diag)
    if share <= UNDETERMINED_RTOL:
        return None
    return (
        f"{where}: the training folds determine the fit in only {solver.rank} of {solver.size} directions, "
        f"and the held-out samples vary in the others ({min(share, 1.0):.2g} of their scatter): their "
        f"predictions depend on the solver, so this held-out PR is not a result; feed more (or more varied) tokens"
    )


def _insample(measure: str, data: _State) -> _Outcome:
    rss = tss = torch.zeros((), dtype=torch.float64, device=data.total.z.device)
    for targets in data.targets(measure, data.total, data.features.mean):
        rss = rss + _insample_rss(data.solver, targets)
        tss = tss + targets.ss.sum()
    reason = _interpolation_reason(f"state {data.state}", data.n, data.d, training=False)
    return _Outcome(_ratio(rss, tss), ill_posed=reason, warnings=(reason,) if reason else ())


def _fuzziness(data: _State) -> _Outcome:
    """Tr(SS_w SS_b^+) with SS_b = R'R, R = class rows sqrt(n_c)(mu_c - mu); factored when classes <= d."""
    total, features, n_classes = data.total, data.features, data.classes.numel()
    chunks = data.targets("onehot", total, features.mean)
    rows = [(t.cross / t.mean.mul(total.n).sqrt()[None, :]).T for t in chunks]
    if n_classes <= data.d:
        factor = _drop_null_row(torch.cat(rows), total.counts[data.classes].sqrt())
        value = trace_pinv_factored(features.sxx - factor.T @ factor, factor)
    else:
        between = sum(r.T @ r for r in rows)
        value = trace_pinv(features.sxx - between, between)
    if n_classes == data.n:
        reason = (
            f"state {data.state}: each of the {n_classes} classes was seen once: within-class scatter "
            f"is 0, so separation fuzziness is 0 by construction, not a result"
        )
        return _Outcome(value, ill_posed=reason, warnings=(reason,))
    return _Outcome(value)


def _drop_null_row(rows: Tensor, weights: Tensor) -> Tensor:
    """Rotate away the exact null combination weights' rows = 0 (a Householder reflection), leaving k - 1 rows.

    The class rows sqrt(n_c)(mu_c - mu) always satisfy sum_c sqrt(n_c) row_c = 0; removing that
    direction keeps R'R unchanged and lets the k x k factorization use Cholesky.
    """
    unit = weights / weights.norm()
    v = unit.clone()
    v[0] += 1.0
    reflected = rows - v[:, None] * ((v @ rows) / v[0])[None, :]
    return reflected[1:]


@dataclass
class _FoldLog:
    """Held-out scores of one measure over folds, with notes (skipped folds) and flags (ill-posed folds)."""

    scores: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def outcome(self, state: int, n_folds: int) -> _Outcome:
        if len(self.scores) < 2:
            self.flags.append(f"state {state}: only {len(self.scores)} of {n_folds} folds could be scored: no held-out spread")
            self.notes.append(self.flags[-1])
        if not self.scores:
            return _Outcome(math.nan, math.nan, "; ".join(self.flags), tuple(self.notes))
        mean = sum(self.scores) / len(self.scores)
        spread = math.sqrt(sum((s - mean) ** 2 for s in self.scores) / len(self.scores))
        return _Outcome(mean, spread, "; ".join(self.flags) or None, tuple(self.notes))


def _heldout(measures: Sequence[str], data: _State) -> dict[str, _Outcome]:
    """K-fold held-out PR of several measures; each fold's training factorization is shared and then freed."""
    logs = {m: _FoldLog() for m in measures}
    n_folds = len(data.folds)
    for k, test in enumerate(data.folds):
        where = f"state {data.state}, fold {k}"
        train = data.total - test
        n_test, n_train = int(round(test.n)), int(round(train.n))
        skip = None
        if n_test == 0:
            skip = f"{where}: no samples (no document with index % {n_folds} == {k}); fold skipped"
        elif n_train == 0:
            skip = f"{where}: the other folds hold no samples, nothing to fit; fold skipped"
        if skip:
            for log in logs.values():
                log.notes.append(skip)
            continue
        train_f, test_f = _Features.of(train), _Features.of(test)
        solver = train_f.solver()
        flag = _interpolation_reason(where, n_train, data.d, training=True) or _undetermined_reason(where, solver, train_f, test_f)
        for measure, log in logs.items():
            score = _fold_score(measure, data, solver, (train, train_f), (test, test_f))
            if score is None:
                log.notes.append(f"{where}: the {measure} target has no variance in the {n_test} held-out samples; fold skipped")
                continue
            log.scores.append(score)
            log.notes += [flag] if flag else []
            log.flags += [flag] if flag else []
    return {m: log.outcome(data.state, n_folds) for m, log in logs.items()}


def _fold_score(
    measure: str, data: _State, solver: GramSolver, train: tuple[Sums, _Features], test: tuple[Sums, _Features]
) -> float | None:
    """Held-out PR of one fold from the training fit, or None when the fold's target is constant."""
    (train_sums, train_f), (test_sums, test_f) = train, test
    rss = tss = raw = torch.zeros((), dtype=torch.float64, device=test_sums.z.device)
    pairs = zip(data.targets(measure, train_sums, train_f.mean), data.targets(measure, test_sums, test_f.mean))
    for train_t, test_t in pairs:
        rss = rss + _heldout_rss(solver, train_f, train_t, test_f, test_t)
        tss = tss + test_t.ss.sum()
        raw = raw + test_t.raw.sum()
    return None if _no_variance(tss, raw) else _ratio(rss, tss)


def state_outcomes(
    state: int, folds: Sequence[Sums], measures: Sequence[str], columns: Mapping[str, int]
) -> dict[str, _Outcome]:
    """Every measure of one state from its per-fold statistics (a single entry when not folded)."""
    data = _State(state, folds, columns)
    outcomes: dict[str, _Outcome] = {}
    heldout: list[str] = []
    for measure in measures:
        reason = _undefined_reason(measure, data)
        if reason is not None:
            outcomes[measure] = _Outcome(math.nan, ill_posed=reason, warnings=(reason,))
        elif measure == "separation_fuzziness":
            outcomes[measure] = _fuzziness(data)
        elif len(folds) > 1:
            heldout.append(measure)
        else:
            outcomes[measure] = _insample(measure, data)
    if heldout:
        outcomes.update(_heldout(heldout, data))
    return {m: outcomes[m] for m in measures}


def compute_measures(
    folds_by_state: Mapping[int, Sequence[Sums]],
    measures: Sequence[str],
    scalar_columns: Mapping[str, int],
    n_tokens: int,
    hidden_size: int,
    shared_warnings: Sequence[str] = (),
) -> dict[str, MeasureResult]:
    """Every requested measure for every state, with flags and warnings (not logged here)."""
    by_state = {s: state_outcomes(s, folds, measures, scalar_columns) for s, folds in folds_by_state.items()}
    folded = any(len(f) > 1 for f in folds_by_state.values())
    results: dict[str, MeasureResult] = {}
    for measure in measures:
        outcomes = {s: by_state[s][measure] for s in by_state}
        warnings = list(shared_warnings)
        for outcome in outcomes.values():
            warnings += [w for w in outcome.warnings if w not in warnings]
        results[measure] = MeasureResult(
            measure=measure,
            values={s: o.value for s, o in outcomes.items()},
            fold_std=_fold_spreads(outcomes) if folded and measure in HELDOUT_MEASURES else None,
            n_tokens=n_tokens,
            hidden_size=hidden_size,
            warnings=tuple(warnings),
            ill_posed={s: o.ill_posed for s, o in outcomes.items() if o.ill_posed},
        )
    return results


def _fold_spreads(outcomes: Mapping[int, _Outcome]) -> dict[int, float]:
    return {s: math.nan if o.fold_std is None else o.fold_std for s, o in outcomes.items()}


def log_warnings(results: Mapping[str, MeasureResult], already: set[str]) -> None:
    """Log each warning sentence once per ``already`` set (the caller keeps it across calls)."""
    for result in results.values():
        for message in result.warnings:
            if message not in already:
                already.add(message)
                logger.warning("%s: %s", result.measure, message)

